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

use shmproc_channel::{Connection, Pipe, PipeEnd, PipeMode, RecvTimeoutError};

use super::client::{SpinBudget, recv_spinning};
use super::wire::{Hello, Kind, MAX_FRAME, Op, PIPE_AFTER, Reply, Request, Val, Welcome};
use crate::{Address, ConnError, Listener, PendingConnection, RemoteError, SocketConnection};

/// How often idle threads look at the shutdown flag.
const TICK: Duration = Duration::from_millis(200);
/// Bytes per direction of a session's pipe: requests and replies are
/// small, and longer ones stream through (a larger pipe costs more to
/// make and unmap, at every connect).
const SESSION_PIPE_CAPACITY: usize = 4 << 10;
/// How long a client has to send the rest of a message it started.
const FRAME_TIMEOUT: Duration = Duration::from_secs(30);

/// What the starting process tells the server.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub(crate) struct ServerConfig {
    pub(crate) authkey: Vec<u8>,
    pub(crate) unix: PathBuf,
    pub(crate) tcp: Option<std::net::SocketAddr>,
    pub(crate) handshake_timeout: Duration,
}

/// A stored value, and the objects its proxies refer to: one reference
/// to each, held while the value is stored (nested proxies).
struct Item {
    bytes: Vec<u8>,
    refs: Box<[u64]>,
}

enum State {
    Dict {
        map: HashMap<Vec<u8>, (u64, Item)>,
        next: u64,
    },
    List {
        items: Vec<Item>,
        version: u64,
    },
    Value {
        version: u64,
        item: Item,
    },
    Queue {
        items: VecDeque<Item>,
        maxsize: u64,
    },
    /// Owned by a client.
    Lock {
        owner: Option<u64>,
    },
    /// Owned by a thread (client, thread tag), `count` times.
    RLock {
        owner: Option<(u64, u64)>,
        count: u64,
    },
    /// An `RLock` with waiters: tickets waiting for a notify, and those
    /// notified that have not woken yet.
    Cond {
        owner: Option<(u64, u64)>,
        count: u64,
        next: u64,
        waiting: VecDeque<u64>,
        woken: HashSet<u64>,
    },
    Sem {
        value: u64,
        bound: Option<u64>,
    },
    /// `generation` counts the times the barrier filled; `epoch` its resets.
    Barrier {
        parties: u64,
        count: u64,
        generation: u64,
        epoch: u64,
        broken: bool,
    },
    Event(bool),
}

impl State {
    /// Moves out the references the stored values hold (the object is
    /// being freed).
    fn take_refs(&mut self, out: &mut Vec<u64>) {
        let mut take = |i: &mut Item| out.extend(std::mem::take(&mut i.refs));
        match self {
            State::Dict { map, .. } => map.values_mut().for_each(|(_, i)| take(i)),
            State::List { items, .. } => items.iter_mut().for_each(take),
            State::Queue { items, .. } => items.iter_mut().for_each(take),
            State::Value { item, .. } => take(item),
            _ => {}
        }
    }
}

struct Obj {
    kind: Kind,
    ty: String,
    state: Mutex<State>,
    cond: Condvar,
    /// Freed (no reference left): set and read with `state` locked, so
    /// no value is stored into an object whose references were let go.
    dead: AtomicBool,
}

#[derive(Default)]
struct Table {
    objs: HashMap<u64, (Arc<Obj>, u64)>,
    names: HashMap<String, u64>,
    next_id: u64,
}

pub(crate) struct Server {
    /// Random: a client stores only proxies of this server.
    id: u64,
    table: Mutex<Table>,
    shutdown: AtomicBool,
    stop: (Mutex<bool>, Condvar),
    handshake_timeout: Duration,
    authkey: Vec<u8>,
}

/// One more reference to `id` held by a session.
fn hold(held: &mut HashMap<u64, (u64, Arc<Obj>)>, id: u64, o: &Arc<Obj>) {
    held.entry(id).or_insert_with(|| (0, Arc::clone(o))).0 += 1;
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panicking session thread must not take the server down.
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The most session threads left idle (waiting for a client) per listener.
const MAX_IDLE: usize = 2;

/// The session threads of one listener.
struct Pool {
    listener: Listener,
    /// Unix socket: clients are served over pipes.
    local: bool,
    state: Mutex<PoolState>,
    /// Signalled when the leader hands the listener on.
    turn: Condvar,
    /// Signalled when a thread should start ([`PoolState::spawn`]).
    spawn: Condvar,
}

struct PoolState {
    /// Threads between sessions (or about to start), leader included.
    idle: usize,
    /// A thread polls the listener.
    leading: bool,
    /// The spawner is asked for one more thread.
    spawn: bool,
}

/// A session's transport.
#[allow(
    clippy::large_enum_variant,
    reason = "one per session, held in place; the pipe variant is the common one and boxing it adds a hop per call"
)]
enum Transport {
    /// A local client: the socket it connected with, which serves its
    /// first [`PIPE_AFTER`] calls, and then the pipe sent with the reply to
    /// the last of them. The socket is kept for the session's life: its
    /// EOF means the client is gone (also one that never attached to the
    /// pipe). The count of calls served over the socket.
    Local(SocketConnection, Option<(Connection, SpinBudget)>, u32),
    /// A remote client.
    Socket(SocketConnection),
}

impl Transport {
    fn recv(&mut self) -> Result<Vec<u8>, ConnError> {
        match self {
            Transport::Local(sock, Some((c, budget)), _) => {
                // A client usually sends its next request right after a
                // reply: stay awake for it a little while (a sleeping
                // thread's wake-up costs more than the whole round trip).
                if let Some(b) = recv_spinning(c, budget, None)? {
                    return Ok(b);
                }
                let got = c
                    .recv_bytes_max_timeout(MAX_FRAME, TICK)
                    .map_err(|e| match e {
                        RecvTimeoutError::Timeout => ConnError::Timeout,
                        RecvTimeoutError::Eof => ConnError::Eof,
                        e => ConnError::Pipe(e.to_string()),
                    });
                match got {
                    Err(ConnError::Timeout) if !matches!(sock.poll(Duration::ZERO), Ok(false)) => {
                        Err(ConnError::Eof)
                    }
                    r => r,
                }
            }
            // Wait for a message to start, then read it whole: a deadline in
            // the middle of a frame would lose its first bytes. One read
            // with the socket's receive timeout, no poll first.
            Transport::Local(s, None, _) | Transport::Socket(s) => {
                s.recv_frame_within(TICK, MAX_FRAME, FRAME_TIMEOUT)
            }
        }
    }

    /// Whether the client may still be waiting for a reply: nothing came
    /// from it meanwhile (it sends nothing while it waits, so a readable
    /// socket or pipe is its EOF).
    fn alive(&mut self) -> bool {
        match self {
            Transport::Local(s, Some((c, _)), _) => {
                matches!(s.poll(Duration::ZERO), Ok(false))
                    && matches!(c.poll(Some(Duration::ZERO)), Ok(false))
            }
            Transport::Local(s, None, _) | Transport::Socket(s) => {
                matches!(s.poll(Duration::ZERO), Ok(false))
            }
        }
    }

    /// Sends a reply. The reply to a local client's [`PIPE_AFTER`]th call
    /// over its socket comes with a pipe (`spare`, or one made now): the
    /// client sends its next requests over it. A client that makes fewer
    /// calls (one that connects to look something up, a child handed a
    /// proxy) never costs a pipe.
    fn send(&mut self, b: &[u8], spare: &mut Option<Connection>) -> Result<(), ConnError> {
        let timeout = Duration::from_secs(30);
        match self {
            Transport::Local(_, Some((c, _)), _) => c
                .send_bytes_timeout(b, timeout)
                .map_err(|e| ConnError::Pipe(e.to_string())),
            Transport::Local(s, pipe @ None, calls) => {
                *calls = calls.saturating_add(1);
                if *calls != PIPE_AFTER {
                    return s.send_bytes_timeout(b, timeout);
                }
                // No pipe to be had: the socket serves on.
                let Some(c) = spare.take().or_else(new_pipe) else {
                    return s.send_bytes_timeout(b, timeout);
                };
                s.send_frames_with_fd(&[b], Some(c.segment().fd()))?;
                *pipe = Some((c, SpinBudget::default()));
                Ok(())
            }
            Transport::Socket(s) => s.send_bytes_timeout(b, timeout),
        }
    }
}

/// A session's pipe (anonymous: its descriptor goes to the client, so
/// nothing is named and nothing can be left in /dev/shm), our end claimed.
fn new_pipe() -> Option<Connection> {
    let (mut ours, theirs) = Pipe::options(PipeMode::Duplex, SESSION_PIPE_CAPACITY)
        .build()
        .ok()?;
    ours.claim_now().ok()?;
    // Never used here: its drop does not close the end.
    drop(theirs);
    Some(ours)
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
    let server = Arc::new(Server::new(
        shmproc_shm::os::random_u64(),
        cfg.handshake_timeout,
        cfg.authkey.clone(),
    ));
    let mut pools = Vec::new();
    for (l, local) in std::iter::once((unix, true)).chain(tcp.map(|t| (t, false))) {
        let pool = Arc::new(Pool {
            listener: l,
            local,
            state: Mutex::new(PoolState {
                idle: 1,
                leading: false,
                spawn: false,
            }),
            turn: Condvar::new(),
            spawn: Condvar::new(),
        });
        let (s, p) = (Arc::clone(&server), Arc::clone(&pool));
        let (s2, p2) = (Arc::clone(&server), Arc::clone(&pool));
        let started = std::thread::Builder::new()
            .name("mgr-session".into())
            .spawn(move || s.lead(p))
            .and_then(|_| {
                std::thread::Builder::new()
                    .name("mgr-spawner".into())
                    .spawn(move || s2.spawner(&p2))
            });
        if started.is_err() {
            let _ = report.send_obj(&Err::<Vec<Address>, String>("no thread".into()));
            return;
        }
        pools.push(pool);
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
    // The idle threads see the flag within a tick; the socket file goes
    // now (a client connecting meanwhile is refused).
    let _ = std::fs::remove_file(&cfg.unix);
    drop(pools);
}

impl Server {
    /// A server with no object yet.
    pub(super) fn new(id: u64, handshake_timeout: Duration, authkey: Vec<u8>) -> Self {
        Server {
            id,
            table: Mutex::new(Table {
                next_id: 1,
                ..Table::default()
            }),
            shutdown: AtomicBool::new(false),
            stop: (Mutex::new(false), Condvar::new()),
            handshake_timeout,
            authkey,
        }
    }

    /// How many objects it holds.
    pub(super) fn object_count(&self) -> usize {
        lock(&self.table).objs.len()
    }

    fn request_stop(&self) {
        let (m, c) = &self.stop;
        *lock(m) = true;
        c.notify_all();
    }

    /// A session thread (leader and followers, one pool per listener):
    /// while idle it makes its next pipe (for `local` clients), then waits
    /// to be the one thread polling the listener, accepts, hands the
    /// listener on (asking the pool's spawner for a thread when no other
    /// is idle), serves the client, and goes back to idle (or exits, when
    /// [`MAX_IDLE`] others are). Neither a thread start, a pipe's creation
    /// nor a hand-off between threads is on a client's connect path.
    fn lead(self: Arc<Self>, pool: Arc<Pool>) {
        let mut unused = None;
        loop {
            let pipe = unused
                .take()
                .or_else(|| pool.local.then(new_pipe).flatten());
            let Some(p) = self.accept_as_leader(&pool) else {
                return;
            };
            // Nobody idle to take the listener next: the pool's spawner
            // starts a thread (not this one: its client is waiting).
            {
                let mut st = lock(&pool.state);
                if st.idle == 0 && !st.spawn {
                    st.spawn = true;
                    pool.spawn.notify_one();
                }
            }
            unused = Arc::clone(&self).start_session(p, pipe, pool.local);
            let mut st = lock(&pool.state);
            if st.idle >= MAX_IDLE || self.shutdown.load(Ordering::Acquire) {
                return;
            }
            st.idle += 1;
        }
    }

    /// Starts a session thread whenever a leader finds none idle.
    fn spawner(self: Arc<Self>, pool: &Arc<Pool>) {
        loop {
            let mut st = lock(&pool.state);
            while !st.spawn && !self.shutdown.load(Ordering::Acquire) {
                st = pool
                    .spawn
                    .wait_timeout(st, TICK)
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .0;
            }
            if self.shutdown.load(Ordering::Acquire) {
                return;
            }
            // Taken and counted in one step, before the thread starts (it
            // counts itself out as it leads): a leader that finds none
            // idle after this asks again, and is heard.
            st.spawn = false;
            st.idle += 1;
            drop(st);
            let (s, p) = (Arc::clone(&self), Arc::clone(pool));
            let started = std::thread::Builder::new()
                .name("mgr-session".into())
                .spawn(move || s.lead(p));
            if started.is_err() {
                let mut st = lock(&pool.state);
                st.idle -= 1;
                // Try again a tick later (nobody may be leading).
                st.spawn = true;
                let _ = pool.spawn.wait_timeout(st, TICK);
            }
        }
    }

    /// Waits to lead (one thread polls the listener at a time), then for a
    /// connection; `None` at shutdown. Counts this thread out of the idle.
    fn accept_as_leader(&self, pool: &Pool) -> Option<PendingConnection> {
        let mut st = lock(&pool.state);
        while st.leading && !self.shutdown.load(Ordering::Acquire) {
            st = pool
                .turn
                .wait_timeout(st, TICK)
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .0;
        }
        st.idle = st.idle.saturating_sub(1);
        if self.shutdown.load(Ordering::Acquire) {
            return None;
        }
        st.leading = true;
        drop(st);
        let mut got = None;
        while got.is_none() && !self.shutdown.load(Ordering::Acquire) {
            match pool.listener.accept_pending_timeout(TICK) {
                Ok(p) => got = Some(p),
                // EMFILE and the like: the poll in the next round bounds the retry rate
                // only when the socket stays readable, so back off for a tick.
                Err(ConnError::Timeout) => {}
                #[allow(clippy::disallowed_methods)]
                // Back-off after an accept error, not synchronisation.
                Err(_) => std::thread::sleep(TICK),
            }
        }
        lock(&pool.state).leading = false;
        pool.turn.notify_one();
        got
    }

    /// Authenticates, sets the transport up, serves. Any failure here ends
    /// this connection only. Gives `pipe` back when it was not handed out
    /// (a failed handshake, a socket session): the next session takes it.
    fn start_session(
        self: Arc<Self>,
        p: PendingConnection,
        pipe: Option<Connection>,
        local: bool,
    ) -> Option<Connection> {
        let mut pipe = pipe;
        // What the hello decided: the client, and whether it is local. A
        // client of ours sends its hello with its challenge, and gets the
        // welcome with our last handshake frames: one round trip less.
        let mut decided = None;
        let auth = p.authenticate_early(
            &self.authkey,
            self.handshake_timeout,
            |sock, hello, ours| {
                decided = self.welcome(sock, hello, ours, local);
                Ok(())
            },
        );
        let Ok((mut sock, early)) = auth else {
            return pipe;
        };
        sock.set_max_message_len(MAX_FRAME);
        if !early {
            let Ok(hello) = sock.recv_frame(64, Some(Instant::now() + self.handshake_timeout))
            else {
                return pipe;
            };
            decided = self.welcome(&mut sock, &hello, &[], local);
        }
        let Some((client, wants_pipe)) = decided else {
            return pipe;
        };
        let transport = if wants_pipe {
            Transport::Local(sock, None, 0)
        } else {
            Transport::Socket(sock)
        };
        Session::new(&self, client).run(transport, &mut pipe);
        pipe
    }

    /// Answers a client's [`Hello`] (after `ours`, our handshake frames not
    /// sent yet, in the same write): its id and whether it is served as a
    /// local client (its pipe comes later, [`Transport::send`]); `None`
    /// when it is refused or the answer could not go out.
    fn welcome(
        &self,
        sock: &mut SocketConnection,
        hello: &[u8],
        ours: &[&[u8]],
        local: bool,
    ) -> Option<(u64, bool)> {
        let send = |sock: &mut SocketConnection, w: &Welcome| {
            let w = encode(w);
            let mut frames = ours.to_vec();
            frames.push(&w);
            sock.send_frames_with_fd(&frames, None)
        };
        let (client, wants_pipe) = match postcard::from_bytes::<Hello>(hello) {
            Ok(Hello::Socket { client }) => (client, false),
            Ok(Hello::Pipe { client }) => (client, true),
            Err(_) => return None,
        };
        if !wants_pipe {
            send(sock, &Welcome::Socket { server: self.id }).ok()?;
            return Some((client, false));
        }
        if !local {
            // A pipe's descriptor only passes over a Unix socket.
            let _ = send(
                sock,
                &Welcome::Refused("pipes are for local clients".into()),
            );
            return None;
        }
        send(sock, &Welcome::Pipe { server: self.id }).ok()?;
        Some((client, true))
    }

    fn get(&self, id: u64) -> Result<Arc<Obj>, RemoteError> {
        lock(&self.table)
            .objs
            .get(&id)
            .map(|(o, _)| Arc::clone(o))
            .ok_or(RemoteError::NoSuchObject(id))
    }

    /// Drops one reference to each of `work`; an object left with none is
    /// freed, and so are, in turn, the references its values held.
    fn release_all(&self, mut work: Vec<u64>) {
        while let Some(id) = work.pop() {
            let gone = {
                let mut t = lock(&self.table);
                match t.objs.get_mut(&id) {
                    Some((_, refs)) if *refs > 1 => {
                        *refs -= 1;
                        None
                    }
                    Some(_) => t.objs.remove(&id).map(|(o, _)| o),
                    None => None,
                }
            };
            // Never the table's lock while taking an object's (a call
            // storing a proxy takes them the other way round).
            if let Some(o) = gone {
                let mut st = lock(&o.state);
                o.dead.store(true, Ordering::Relaxed);
                st.take_refs(&mut work);
                o.cond.notify_all();
            }
        }
    }
}

pub(super) struct Session<'a> {
    server: &'a Server,
    /// The client's id ([`Hello`]): its connections (one for calls, more
    /// for blocking waits) share lock ownership.
    client: u64,
    /// The references this client holds, and their objects: a call finds
    /// its object here, without the table's lock (shared by every session).
    held: HashMap<u64, (u64, Arc<Obj>)>,
    /// Lock-like objects this session acquired (released at its end).
    locks: HashSet<u64>,
    /// References granted to the client by the request being served (the
    /// proxies inside the values it reads), reported with the reply.
    grants: Vec<u64>,
    /// References to drop once the request's object is unlocked (values
    /// overwritten or removed).
    drop_later: Vec<u64>,
}

impl<'a> Session<'a> {
    /// A session of `client` with nothing held yet.
    pub(super) fn new(server: &'a Server, client: u64) -> Self {
        Session {
            server,
            client,
            held: HashMap::new(),
            locks: HashSet::new(),
            grants: Vec::new(),
            drop_later: Vec::new(),
        }
    }

    /// Decodes one request and serves it: the reply, and `true` for a
    /// `Shutdown` (the caller sends the reply, then stops the server).
    /// `alive`: whether the client still waits (a blocking call's wait
    /// ends when it does not).
    pub(super) fn serve_frame(
        &mut self,
        bytes: &[u8],
        alive: &mut dyn FnMut() -> bool,
    ) -> (Reply, bool) {
        match postcard::from_bytes::<Request>(bytes) {
            Ok(Request::Shutdown) => (Reply::Ok, true),
            Ok(req) => (self.handle(req, alive), false),
            Err(e) => (Reply::Err(RemoteError::BadRequest(e.to_string())), false),
        }
    }

    /// Serves the client until it goes; `spare`: the pipe a local client
    /// gets after its first calls (taken when it does).
    fn run(mut self, mut t: Transport, spare: &mut Option<Connection>) {
        loop {
            if self.server.shutdown.load(Ordering::Acquire) {
                break;
            }
            let bytes = match t.recv() {
                Ok(b) => b,
                Err(ConnError::Timeout) => continue,
                Err(_) => break,
            };
            let (reply, shutdown) = self.serve_frame(&bytes, &mut || t.alive());
            if shutdown {
                let _ = t.send(&encode(&reply), spare);
                self.server.request_stop();
                break;
            }
            // A small reply (most are) is encoded on the stack.
            let mut stack = [0u8; 256];
            let heap;
            let bytes: &[u8] = match postcard::to_slice(&reply, &mut stack) {
                Ok(b) => b,
                Err(_) => {
                    heap = encode(&reply);
                    &heap
                }
            };
            if t.send(bytes, spare).is_err() {
                break;
            }
        }
        self.end();
    }

    /// Drops every reference this client held and releases its locks.
    pub(super) fn end(&mut self) {
        for id in std::mem::take(&mut self.locks) {
            if let Ok(o) = self.server.get(id) {
                match &mut *lock(&o.state) {
                    State::Lock { owner } if *owner == Some(self.client) => *owner = None,
                    State::RLock { owner, count } | State::Cond { owner, count, .. }
                        if owner.is_some_and(|(c, _)| c == self.client) =>
                    {
                        *owner = None;
                        *count = 0;
                    }
                    _ => {}
                }
                o.cond.notify_all();
            }
        }
        let mut work = std::mem::take(&mut self.drop_later);
        for (id, (n, _)) in std::mem::take(&mut self.held) {
            work.extend(std::iter::repeat_n(
                id,
                usize::try_from(n).unwrap_or(usize::MAX),
            ));
        }
        self.server.release_all(work);
    }

    /// Takes a value in to store it: one more reference to each object
    /// its proxies refer to ([`RemoteError::NoSuchObject`] when one is gone).
    fn take_in(&self, v: Val) -> Result<Item, RemoteError> {
        if !v.refs.is_empty() {
            let mut t = lock(&self.server.table);
            if let Some(&gone) = v.refs.iter().find(|id| !t.objs.contains_key(id)) {
                return Err(RemoteError::NoSuchObject(gone));
            }
            for id in &v.refs {
                if let Some((_, n)) = t.objs.get_mut(id) {
                    *n += 1;
                }
            }
        }
        Ok(Item {
            bytes: v.bytes,
            refs: v.refs.into_boxed_slice(),
        })
    }

    /// A copy of a stored value for the reply; the client gets one
    /// reference to each object its proxies refer to.
    fn out(&mut self, item: &Item) -> Vec<u8> {
        self.grant(&item.refs);
        item.bytes.clone()
    }

    /// A value taken out of its object, for the reply.
    fn out_moved(&mut self, item: Item) -> Vec<u8> {
        self.grant(&item.refs);
        self.drop_later.extend(item.refs);
        item.bytes
    }

    /// A stored value overwritten or dropped.
    fn forget(&mut self, item: Item) {
        self.drop_later.extend(item.refs);
    }

    fn grant(&mut self, refs: &[u64]) {
        if refs.is_empty() {
            return;
        }
        let mut t = lock(&self.server.table);
        for &id in refs {
            // Held by the stored value, so present.
            if let Some((o, n)) = t.objs.get_mut(&id) {
                *n += 1;
                hold(&mut self.held, id, o);
                self.grants.push(id);
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

    fn handle(&mut self, req: Request, alive: &mut dyn FnMut() -> bool) -> Reply {
        let reply = match self.try_handle(req, alive) {
            Ok(r) => r,
            Err(e) => Reply::Err(e),
        };
        if !self.drop_later.is_empty() {
            self.server
                .release_all(std::mem::take(&mut self.drop_later));
        }
        if self.grants.is_empty() {
            reply
        } else {
            Reply::Granted(Box::new(reply), std::mem::take(&mut self.grants))
        }
    }

    fn try_handle(
        &mut self,
        req: Request,
        alive: &mut dyn FnMut() -> bool,
    ) -> Result<Reply, RemoteError> {
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
                    hold(&mut self.held, id, o);
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
                        item: Item {
                            bytes: init,
                            refs: Box::default(),
                        },
                    },
                    Kind::Queue => State::Queue {
                        items: VecDeque::new(),
                        maxsize,
                    },
                    Kind::Lock => State::Lock { owner: None },
                    Kind::Event => State::Event(false),
                    Kind::RLock => State::RLock {
                        owner: None,
                        count: 0,
                    },
                    Kind::Condition => State::Cond {
                        owner: None,
                        count: 0,
                        next: 0,
                        waiting: VecDeque::new(),
                        woken: HashSet::new(),
                    },
                    Kind::Semaphore => State::Sem {
                        value: maxsize,
                        bound: (init.first() == Some(&1)).then_some(maxsize),
                    },
                    Kind::Barrier if maxsize == 0 => {
                        return Err(RemoteError::BadRequest("a barrier of 0 parties".into()));
                    }
                    Kind::Barrier => State::Barrier {
                        parties: maxsize,
                        count: 0,
                        generation: 0,
                        epoch: 0,
                        broken: false,
                    },
                };
                let id = t.next_id;
                t.next_id += 1;
                let obj = Arc::new(Obj {
                    kind,
                    ty,
                    state: Mutex::new(state),
                    cond: Condvar::new(),
                    dead: AtomicBool::new(false),
                });
                // A named object is pinned (one reference held by the
                // server) until shutdown, so any client can find it later.
                let pinned = u64::from(name.is_some());
                hold(&mut self.held, id, &obj);
                t.objs.insert(id, (obj, 1 + pinned));
                if let Some(n) = name {
                    t.names.insert(n, id);
                }
                Ok(Reply::Id(id))
            }
            Request::Attach { id, kind, ty } => {
                let mut t = lock(&self.server.table);
                let (o, refs) = t.objs.get_mut(&id).ok_or(RemoteError::NoSuchObject(id))?;
                Self::check(o, id, kind, &ty)?;
                *refs += 1;
                hold(&mut self.held, id, o);
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
                hold(&mut self.held, id, o);
                Ok(Reply::Ok)
            }
            Request::Release { id } => {
                match self.held.get_mut(&id) {
                    Some((n, _)) if *n > 0 => {
                        *n -= 1;
                        if *n == 0 {
                            self.held.remove(&id);
                        }
                    }
                    _ => return Err(RemoteError::NoSuchObject(id)),
                }
                self.drop_later.push(id);
                Ok(Reply::Ok)
            }
            Request::Call { id, op } => {
                let o = match self.held.get(&id) {
                    Some((_, o)) => Arc::clone(o),
                    None => self.server.get(id)?,
                };
                self.call(&o, id, op, alive)
            }
            Request::Shutdown => Ok(Reply::Ok),
            Request::Count => Ok(Reply::U64(lock(&self.server.table).objs.len() as u64)),
        }
    }

    #[allow(clippy::too_many_lines)]
    fn call(
        &mut self,
        o: &Obj,
        id: u64,
        op: Op,
        alive: &mut dyn FnMut() -> bool,
    ) -> Result<Reply, RemoteError> {
        let unknown = |op: &Op| RemoteError::UnknownMethod {
            method: format!("{op:?}")
                .split(['(', ' '])
                .next()
                .unwrap_or("?")
                .to_owned(),
            kind: format!("{:?}", o.kind),
        };
        let mut st = lock(&o.state);
        if o.dead.load(Ordering::Relaxed) {
            return Err(RemoteError::NoSuchObject(id));
        }
        #[allow(unused_assignments)] // `st` is given back by every wait
        let reply = match (&mut *st, op) {
            (State::Dict { map, .. }, Op::Get(k)) => {
                Reply::Maybe(map.get(&k).map(|(_, v)| self.out(v)))
            }
            (State::Dict { map, .. }, Op::GetVersioned(k)) => {
                Reply::Versioned(map.get(&k).map(|(n, v)| (*n, self.out(v))))
            }
            (State::Dict { map, next }, Op::Set(k, v)) => {
                let v = self.take_in(v)?;
                *next += 1;
                if let Some((_, old)) = map.insert(k, (*next, v)) {
                    self.forget(old);
                }
                Reply::Ok
            }
            (State::Dict { map, next }, Op::Cas(k, ver, v)) => {
                let cur = map.get(&k).map_or(0, |(n, _)| *n);
                if cur == ver {
                    let v = self.take_in(v)?;
                    *next += 1;
                    if let Some((_, old)) = map.insert(k, (*next, v)) {
                        self.forget(old);
                    }
                }
                Reply::Bool(cur == ver)
            }
            (State::Dict { map, .. }, Op::Del(k)) => {
                Reply::Maybe(map.remove(&k).map(|(_, v)| self.out_moved(v)))
            }
            (State::Dict { map, .. }, Op::Contains(k)) => Reply::Bool(map.contains_key(&k)),
            (State::Dict { map, .. }, Op::Len) => Reply::U64(map.len() as u64),
            (State::Dict { map, .. }, Op::Items) => Reply::Pairs(
                map.iter()
                    .map(|(k, (_, v))| (k.clone(), self.out(v)))
                    .collect(),
            ),
            (State::Dict { map, .. }, Op::Clear) => {
                for (_, (_, v)) in map.drain() {
                    self.forget(v);
                }
                Reply::Ok
            }
            (State::List { items, version }, Op::Append(v)) => {
                items.push(self.take_in(v)?);
                *version += 1;
                Reply::Ok
            }
            (State::List { items, version }, Op::Extend(vs)) => {
                let mut taken = Vec::with_capacity(vs.len());
                for v in vs {
                    match self.take_in(v) {
                        Ok(i) => taken.push(i),
                        Err(e) => {
                            taken.into_iter().for_each(|i| self.forget(i));
                            return Err(e);
                        }
                    }
                }
                items.extend(taken);
                *version += 1;
                Reply::Ok
            }
            (State::List { items, .. }, Op::Index(i)) => {
                let at = index(i, items.len())?;
                Reply::Bytes(items.get(at).map(|v| self.out(v)).unwrap_or_default())
            }
            (State::List { items, version }, Op::IndexVersioned(i)) => {
                let at = index(i, items.len())?;
                Reply::Versioned(items.get(at).map(|v| (*version, self.out(v))))
            }
            (State::List { items, version }, Op::SetIndex(i, v)) => {
                let at = index(i, items.len())?;
                let v = self.take_in(v)?;
                if let Some(slot) = items.get_mut(at) {
                    self.forget(std::mem::replace(slot, v));
                }
                *version += 1;
                Reply::Ok
            }
            (State::List { items, version }, Op::CasIndex(i, ver, v)) => {
                let at = index(i, items.len())?;
                let ok = *version == ver;
                if ok {
                    let v = self.take_in(v)?;
                    if let Some(slot) = items.get_mut(at) {
                        self.forget(std::mem::replace(slot, v));
                    }
                    *version += 1;
                }
                Reply::Bool(ok)
            }
            (State::List { items, version }, Op::Pop(i)) => {
                let at = index(i.unwrap_or(-1), items.len())?;
                *version += 1;
                Reply::Bytes(self.out_moved(items.remove(at)))
            }
            (State::List { items, .. }, Op::Len) => Reply::U64(items.len() as u64),
            (State::List { items, .. }, Op::All) => {
                Reply::List(items.iter().map(|v| self.out(v)).collect())
            }
            (State::List { items, version }, Op::Clear) => {
                for v in items.drain(..) {
                    self.forget(v);
                }
                *version += 1;
                Reply::Ok
            }
            (State::Value { version, item }, Op::Load) => {
                Reply::Versioned(Some((*version, self.out(item))))
            }
            (State::Value { version, item }, Op::Store(v)) => {
                let v = self.take_in(v)?;
                self.forget(std::mem::replace(item, v));
                *version += 1;
                Reply::Ok
            }
            (State::Value { version, item }, Op::CasValue(ver, v)) => {
                let ok = *version == ver;
                if ok {
                    let v = self.take_in(v)?;
                    self.forget(std::mem::replace(item, v));
                    *version += 1;
                }
                Reply::Bool(ok)
            }
            (State::Lock { .. }, Op::Acquire(ms, _)) => {
                let me = self.client;
                let (g, r) = block(self.server, o, st, ms, alive, |s| match s {
                    State::Lock { owner } if owner.is_none() => {
                        *owner = Some(me);
                        Some(())
                    }
                    _ => None,
                });
                st = g;
                let got = r?.is_some();
                if got {
                    self.locks.insert(id);
                }
                Reply::Bool(got)
            }
            (State::Lock { owner }, Op::ReleaseLock(_)) => {
                if owner.is_none() {
                    return Err(RemoteError::NotHeld);
                }
                *owner = None;
                o.cond.notify_all();
                Reply::Ok
            }
            (State::RLock { .. } | State::Cond { .. }, Op::Acquire(ms, tag)) => {
                let me = (self.client, tag);
                let (g, r) = block(self.server, o, st, ms, alive, |s| match s {
                    State::RLock { owner, count } | State::Cond { owner, count, .. } => match owner
                    {
                        None => {
                            *owner = Some(me);
                            *count = 1;
                            Some(())
                        }
                        Some(w) if *w == me => {
                            *count += 1;
                            Some(())
                        }
                        Some(_) => None,
                    },
                    _ => None,
                });
                st = g;
                let got = r?.is_some();
                if got {
                    self.locks.insert(id);
                }
                Reply::Bool(got)
            }
            (
                State::RLock { owner, count } | State::Cond { owner, count, .. },
                Op::ReleaseLock(tag),
            ) => {
                if *owner != Some((self.client, tag)) {
                    return Err(RemoteError::NotHeld);
                }
                *count = count.saturating_sub(1);
                if *count == 0 {
                    *owner = None;
                    o.cond.notify_all();
                }
                Reply::Ok
            }
            (State::Cond { .. }, Op::CondWait(ms, tag)) => {
                let me = (self.client, tag);
                let State::Cond {
                    owner,
                    count,
                    next,
                    waiting,
                    ..
                } = &mut *st
                else {
                    return Err(unknown(&Op::CondWait(ms, tag)));
                };
                if *owner != Some(me) {
                    return Err(RemoteError::NotHeld);
                }
                let saved = std::mem::take(count);
                *owner = None;
                let ticket = *next;
                *next += 1;
                waiting.push_back(ticket);
                o.cond.notify_all();
                let (g, r) = block(self.server, o, st, ms, alive, |s| match s {
                    State::Cond { woken, .. } => woken.remove(&ticket).then_some(()),
                    _ => None,
                });
                st = g;
                let mut notified = matches!(r, Ok(Some(())));
                if let State::Cond { waiting, woken, .. } = &mut *st {
                    // Notified as the wait timed out: it counts.
                    notified |= woken.remove(&ticket);
                    waiting.retain(|&t| t != ticket);
                }
                r?;
                // Python's wait re-acquires before it returns, however long
                // that takes.
                let (g, r) = block(self.server, o, st, u64::MAX, alive, |s| match s {
                    State::Cond { owner, count, .. } if owner.is_none() => {
                        *owner = Some(me);
                        *count = saved;
                        Some(())
                    }
                    _ => None,
                });
                st = g;
                r?;
                Reply::Bool(notified)
            }
            (
                State::Cond {
                    owner,
                    waiting,
                    woken,
                    ..
                },
                Op::Notify(n, tag),
            ) => {
                if *owner != Some((self.client, tag)) {
                    return Err(RemoteError::NotHeld);
                }
                for _ in 0..n {
                    match waiting.pop_front() {
                        Some(t) => {
                            woken.insert(t);
                        }
                        None => break,
                    }
                }
                o.cond.notify_all();
                Reply::Ok
            }
            (State::Sem { .. }, Op::Acquire(ms, _)) => {
                let (g, r) = block(self.server, o, st, ms, alive, |s| match s {
                    State::Sem { value, .. } if *value > 0 => {
                        *value -= 1;
                        Some(())
                    }
                    _ => None,
                });
                st = g;
                Reply::Bool(r?.is_some())
            }
            (State::Sem { value, bound }, Op::SemRelease(n)) => {
                let new = value.saturating_add(n);
                if bound.is_some_and(|b| new > b) {
                    return Err(RemoteError::TooManyReleases);
                }
                *value = new;
                o.cond.notify_all();
                Reply::Ok
            }
            (State::Sem { value, .. }, Op::SemValue) => Reply::U64(*value),
            (State::Barrier { .. }, Op::BarrierWait(ms)) => {
                let State::Barrier {
                    parties,
                    count,
                    generation,
                    epoch,
                    broken,
                } = &mut *st
                else {
                    return Err(unknown(&Op::BarrierWait(ms)));
                };
                if *broken {
                    return Err(RemoteError::BrokenBarrier);
                }
                let index = *count;
                *count += 1;
                if *count >= *parties {
                    *count = 0;
                    *generation += 1;
                    o.cond.notify_all();
                    return Ok(Reply::U64(index));
                }
                let (gen0, epoch0) = (*generation, *epoch);
                let (g, r) = block(self.server, o, st, ms, alive, |s| match s {
                    State::Barrier { generation, .. } if *generation != gen0 => Some(true),
                    State::Barrier { epoch, broken, .. } if *broken || *epoch != epoch0 => {
                        Some(false)
                    }
                    _ => None,
                });
                st = g;
                match r {
                    Ok(Some(true)) => Reply::U64(index),
                    Ok(Some(false)) => return Err(RemoteError::BrokenBarrier),
                    // Timed out, or this party is gone: the barrier breaks
                    // (Python's), so the others do not wait for it forever.
                    Ok(None) | Err(_) => {
                        if let State::Barrier { count, broken, .. } = &mut *st {
                            *broken = true;
                            *count = 0;
                        }
                        o.cond.notify_all();
                        r?;
                        return Err(RemoteError::BrokenBarrier);
                    }
                }
            }
            (State::Barrier { count, broken, .. }, Op::Abort) => {
                *broken = true;
                *count = 0;
                o.cond.notify_all();
                Reply::Ok
            }
            (
                State::Barrier {
                    count,
                    epoch,
                    broken,
                    ..
                },
                Op::Reset,
            ) => {
                *epoch += 1;
                *broken = false;
                *count = 0;
                o.cond.notify_all();
                Reply::Ok
            }
            (State::Barrier { parties, .. }, Op::Parties) => Reply::U64(*parties),
            (State::Barrier { count, .. }, Op::Len) => Reply::U64(*count),
            (State::Barrier { broken, .. }, Op::IsBroken) => Reply::Bool(*broken),
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
                let (g, r) = block(self.server, o, st, ms, alive, |s| {
                    matches!(s, State::Event(true)).then_some(())
                });
                st = g;
                Reply::Bool(r?.is_some())
            }
            (State::Queue { .. }, Op::Put(v, ms)) => {
                let mut v = Some(self.take_in(v)?);
                let (g, r) = block(self.server, o, st, ms, alive, |s| match s {
                    State::Queue { items, maxsize }
                        if *maxsize == 0 || (items.len() as u64) < *maxsize =>
                    {
                        items.extend(v.take());
                        Some(())
                    }
                    _ => None,
                });
                st = g;
                if let Some(left) = v.take() {
                    self.forget(left);
                }
                let put = r?.is_some();
                if put {
                    o.cond.notify_all();
                }
                Reply::Bool(put)
            }
            (State::Queue { .. }, Op::QGet(ms)) => {
                let (g, r) = block(self.server, o, st, ms, alive, |s| match s {
                    State::Queue { items, .. } => items.pop_front(),
                    _ => None,
                });
                st = g;
                let got = r?;
                if got.is_some() {
                    o.cond.notify_all();
                }
                Reply::Maybe(got.map(|i| self.out_moved(i)))
            }
            (State::Queue { items, .. }, Op::Len) => Reply::U64(items.len() as u64),
            (_, op) => return Err(unknown(&op)),
        };
        Ok(reply)
    }
}

/// Waits on `o`'s condition variable, in slices of at most [`TICK`],
/// until `ready` answers (`Ok(Some)`), `ms` milliseconds pass (`Ok(None)`;
/// `u64::MAX`: no limit), or the server shuts down or the client is gone
/// (`Err`: nobody reads the reply). No polling by the client: it waits
/// for this one reply.
fn block<'g, R>(
    server: &Server,
    o: &'g Obj,
    mut st: MutexGuard<'g, State>,
    ms: u64,
    alive: &mut dyn FnMut() -> bool,
    mut ready: impl FnMut(&mut State) -> Option<R>,
) -> (MutexGuard<'g, State>, Result<Option<R>, RemoteError>) {
    let deadline = (ms != u64::MAX).then(|| Instant::now() + Duration::from_millis(ms));
    loop {
        if let Some(r) = ready(&mut st) {
            return (st, Ok(Some(r)));
        }
        let slice = match deadline {
            Some(d) => {
                let left = d.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return (st, Ok(None));
                }
                left.min(TICK)
            }
            None => TICK,
        };
        if server.shutdown.load(Ordering::Acquire) || !alive() {
            return (st, Err(RemoteError::Interrupted));
        }
        st = o
            .cond
            .wait_timeout(st, slice)
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .0;
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
