//! [`Manager`]: Python's `multiprocessing.Manager()`, a server process
//! holding shared objects (dict, list, `Namespace`, `Value`, `Queue`,
//! `Lock`, `RLock`, `Condition`, `Semaphore`, `BoundedSemaphore`,
//! `Barrier`, `Event`, registered user types) behind typed proxies.
//!
//! - The server is a child [`Process`] listening on a Unix socket and,
//!   optionally, TCP. Every connection authenticates with the authkey
//!   (Python 3.12's handshake, [`crate::auth`]; the client pipelines its
//!   frames and its hello, so a connect waits on two round trips: the
//!   server's challenge, then its welcome and response with the session's
//!   welcome).
//! - A client on the same machine (the Unix socket) makes its first
//!   [`wire::PIPE_AFTER`] calls over the socket; the reply to the last
//!   comes with a shared-memory pipe ([`shmproc_channel::Pipe`]) that serves
//!   the calls after it: an anonymous one, made before the client came by
//!   an idle session thread, whose descriptor comes with that reply
//!   (`SCM_RIGHTS`: no name, nothing to unlink). A short-lived client (a
//!   look-up, a child handed a proxy) never costs a pipe's set-up. A
//!   remote client is served over its TCP connection (`TCP_NODELAY`, one
//!   write per frame). One connection per process and server, shared by
//!   its proxies; a session thread per connection, from a pool (no thread
//!   start on the connect path).
//! - Every wait for a message, on a pipe or a socket (a caller for its
//!   reply, a session for the next request, both sides of the handshake),
//!   first polls (`pause`, then yielding) for up to an adaptive budget
//!   (50 µs while the peer answers within it, down to 2 µs when it does
//!   not), then sleeps with its timeout: a peer awake on another CPU
//!   answers without the two cross-CPU wake-ups a sleeping wait costs
//!   (10-30 µs each in a VM), and an idle session costs no CPU. This made
//!   a TCP dict call 4-5x faster than a blocking loopback echo and halved
//!   a local connect (`manager_compare` under `chrt -f 10`), for about
//!   twice the call's time in CPU (both processes together).
//! - Blocking methods (`Lock::acquire`, `Queue::get`, `Condition::wait`,
//!   `Barrier::wait`, ...) are first tried without waiting; a call that
//!   must wait goes, once, on a waiting connection of its own (kept for
//!   the next): the server answers when the wait ends, no polling, and the
//!   process's other proxies go on meanwhile. Locks are owned by the
//!   client (its connections share its id), `RLock`s and `Condition`s by a
//!   thread of the client.
//! - Every call has a timeout ([`ManagerBuilder::timeout`]); when the server
//!   dies, the pipe reports EOF (its pid is gone) and the socket closes, so
//!   every proxy call errors ([`ProxyError::is_disconnected`]) instead of
//!   hanging. When a client dies, its references are dropped, the locks
//!   it held released, and a barrier it waited at broken.
//! - Nested proxies (Python 3.6+): a proxy stored in a value of an object
//!   of the same manager (a dict of lists, a queue of proxies) is read
//!   back, in any process, as a working proxy. The stored value holds one
//!   reference to its object, the proxy read another, so a nested object
//!   lives while a container or a proxy anywhere refers to it, and goes
//!   when the last one drops it or its process dies (only a cycle waits
//!   for shutdown, as in Python). A proxy serializes nowhere else.
//! - Objects are reference counted per client; a named object
//!   (`dict_named`, ...) lives until shutdown, for clients that find it by
//!   name ([`Manager::connect`] from another process or machine).

mod client;
pub(crate) mod fuzzing;
mod proxy;
mod server;
#[doc(hidden)]
pub mod wire;

/// The sessions' pipe wait, for `manager_compare`'s floor (not API).
#[doc(hidden)]
pub mod spin {
    pub use super::client::{SpinBudget, recv_spinning};
}

use std::marker::PhantomData;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;
use shmproc_channel::{Connection, Pipe};
use shmproc_process::{Context, Process, Serde};

pub use proxy::{
    BarrierProxy, ConditionProxy, DictProxy, EventProxy, ListProxy, LockProxy, NamespaceProxy,
    QueueProxy, RLockProxy, SemaphoreProxy, ValueProxy,
};

use self::client::ClientHandle;
use self::proxy::{Base, enc};
use self::server::ServerConfig;
use self::wire::{Kind, Reply, Request};
use crate::{Address, ManagerError, ProxyError, RemoteError};

/// Default timeout of every proxy call.
pub const DEFAULT_CALL_TIMEOUT: Duration = Duration::from_secs(30);
/// How long `start` waits for the server to report its addresses.
const START_TIMEOUT: Duration = Duration::from_secs(30);

fn server_entry((cfg, mut report): (Serde<ServerConfig>, Connection)) {
    server::serve(cfg.0, &mut report);
}

/// How to start a [`Manager`].
#[derive(Debug, Clone)]
pub struct ManagerBuilder {
    tcp: Option<SocketAddr>,
    authkey: Option<Vec<u8>>,
    timeout: Duration,
    handshake_timeout: Duration,
    context: Option<Context>,
}

impl ManagerBuilder {
    /// Also listen on TCP at `addr` (port 0: any free port; see
    /// [`Manager::tcp_address`]), for clients on other machines.
    #[must_use]
    pub fn tcp(mut self, addr: SocketAddr) -> Self {
        self.tcp = Some(addr);
        self
    }

    /// The authkey (default: 32 random bytes, [`Manager::authkey`]).
    #[must_use]
    pub fn authkey(mut self, key: &[u8]) -> Self {
        self.authkey = Some(key.to_vec());
        self
    }

    /// The timeout of every proxy call (default [`DEFAULT_CALL_TIMEOUT`]).
    #[must_use]
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// How long a client has to authenticate.
    #[must_use]
    pub fn handshake_timeout(mut self, timeout: Duration) -> Self {
        self.handshake_timeout = timeout;
        self
    }

    /// The context (start method) of the server process.
    #[must_use]
    pub fn context(mut self, ctx: Context) -> Self {
        self.context = Some(ctx);
        self
    }

    /// Starts the server process and connects to it.
    ///
    /// # Errors
    /// When the server cannot start, bind its addresses, or answer in time.
    pub fn start(self) -> Result<Manager, ManagerError> {
        let authkey = self.authkey.unwrap_or_else(|| {
            (0..4)
                .flat_map(|_| shmproc_shm::os::random_u64().to_le_bytes())
                .collect()
        });
        let Address::Unix(unix) = Address::unique_unix() else {
            unreachable!("unique_unix is a Unix address")
        };
        let cfg = ServerConfig {
            authkey: authkey.clone(),
            unix,
            tcp: self.tcp,
            handshake_timeout: self.handshake_timeout,
        };
        let (mut ours, theirs) = Pipe::new().map_err(ManagerError::setup)?;
        let mut b = Process::builder().name("shmproc-manager");
        if let Some(ctx) = self.context {
            b = b.context(ctx);
        }
        let server = b
            .target(server_entry, (Serde(cfg), theirs))
            .start()
            .map_err(ManagerError::setup)?;
        let addrs: Result<Vec<Address>, String> = match ours.recv_obj_timeout(START_TIMEOUT) {
            Ok(a) => a,
            Err(e) => {
                let _ = server.kill();
                let _ = server.join_timeout(START_TIMEOUT);
                return Err(ManagerError::setup(e));
            }
        };
        let addrs = addrs.map_err(|e| ManagerError::setup(std::io::Error::other(e)))?;
        let local = addrs.first().cloned().ok_or(ManagerError::Closed)?;
        let h = ClientHandle::get(&local, &authkey, self.timeout)?;
        Ok(Manager {
            h,
            server: Some(server),
            addresses: addrs,
            _report: Some(ours),
        })
    }
}

/// A manager: the server process (when this process started it) and this
/// process's connection to it (Python's `multiprocessing.Manager()`,
/// `SyncManager`).
///
/// # Examples
/// ```no_run
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use shmproc_manager::Manager;
/// let m = Manager::start()?;
/// let d = m.dict::<String, u64>()?;
/// d.set(&"a".into(), &1)?;
/// d.update_with(&"a".into(), |v| v.unwrap_or(0) + 1)?; // never lost
/// assert_eq!(d.get(&"a".into())?, Some(2));
/// m.shutdown()?;
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct Manager {
    h: Arc<ClientHandle>,
    server: Option<Process>,
    addresses: Vec<Address>,
    _report: Option<Connection>,
}

impl Manager {
    /// Starts a server process (local clients only) and connects to it.
    ///
    /// # Errors
    /// As [`ManagerBuilder::start`].
    pub fn start() -> Result<Self, ManagerError> {
        Self::builder().start()
    }

    /// Options: TCP, authkey, timeouts, start method.
    pub fn builder() -> ManagerBuilder {
        ManagerBuilder {
            tcp: None,
            authkey: None,
            timeout: DEFAULT_CALL_TIMEOUT,
            handshake_timeout: crate::DEFAULT_HANDSHAKE_TIMEOUT,
            context: None,
        }
    }

    /// Connects to a running manager at `address` (its Unix socket: served
    /// over shared memory; TCP: over the socket), with `authkey`: a new
    /// connection, used by the proxies this handle makes.
    ///
    /// # Errors
    /// [`ManagerError::Connect`]: unreachable, wrong key, timeout.
    pub fn connect(address: &Address, authkey: &[u8]) -> Result<Self, ManagerError> {
        Self::connect_timeout(address, authkey, DEFAULT_CALL_TIMEOUT)
    }

    /// [`connect`](Self::connect), with `timeout` for the connection and
    /// every call.
    ///
    /// # Errors
    /// As [`connect`](Self::connect).
    pub fn connect_timeout(
        address: &Address,
        authkey: &[u8],
        timeout: Duration,
    ) -> Result<Self, ManagerError> {
        Ok(Self {
            h: ClientHandle::connect_new(address, authkey, timeout)?,
            server: None,
            addresses: vec![address.clone()],
            _report: None,
        })
    }

    /// The server's Unix socket address (or the address connected to).
    pub fn address(&self) -> &Address {
        &self.h.address
    }

    /// The server's TCP address, when it listens on TCP.
    pub fn tcp_address(&self) -> Option<&Address> {
        self.addresses.iter().find(|a| matches!(a, Address::Tcp(_)))
    }

    /// The authkey clients need.
    pub fn authkey(&self) -> &[u8] {
        &self.h.authkey
    }

    /// The server process, when this process started it.
    pub fn server_process(&self) -> Option<&Process> {
        self.server.as_ref()
    }

    fn create(
        &self,
        kind: Kind,
        ty: String,
        name: Option<&str>,
        init: Vec<u8>,
        maxsize: u64,
    ) -> Result<Base, ProxyError> {
        let req = Request::Create {
            kind,
            ty: ty.clone(),
            name: name.map(str::to_owned),
            init,
            maxsize,
        };
        match self.h.call(&req)? {
            Reply::Id(id) => Ok(Base {
                h: Arc::clone(&self.h),
                id,
                kind,
                ty,
            }),
            r => Err(ProxyError::Remote(RemoteError::BadRequest(format!(
                "unexpected reply {r:?}"
            )))),
        }
    }

    /// A new dict (`manager.dict()`).
    ///
    /// # Errors
    /// The server is gone or timed out.
    pub fn dict<K: Serialize + DeserializeOwned, V: Serialize + DeserializeOwned>(
        &self,
    ) -> Result<DictProxy<K, V>, ProxyError> {
        self.dict_maybe_named(None)
    }

    /// The dict named `name`, created on first use; other processes find it
    /// by name. [`RemoteError::WrongType`] when it has other key or value types.
    ///
    /// # Errors
    /// As [`dict`](Self::dict).
    pub fn dict_named<K: Serialize + DeserializeOwned, V: Serialize + DeserializeOwned>(
        &self,
        name: &str,
    ) -> Result<DictProxy<K, V>, ProxyError> {
        self.dict_maybe_named(Some(name))
    }

    fn dict_maybe_named<K: Serialize + DeserializeOwned, V: Serialize + DeserializeOwned>(
        &self,
        name: Option<&str>,
    ) -> Result<DictProxy<K, V>, ProxyError> {
        let ty = format!(
            "{}, {}",
            std::any::type_name::<K>(),
            std::any::type_name::<V>()
        );
        Ok(DictProxy {
            base: self.create(Kind::Dict, ty, name, Vec::new(), 0)?,
            _t: PhantomData,
        })
    }

    /// A new list (`manager.list()`).
    ///
    /// # Errors
    /// As [`dict`](Self::dict).
    pub fn list<T: Serialize + DeserializeOwned>(&self) -> Result<ListProxy<T>, ProxyError> {
        self.list_maybe_named(None)
    }

    /// The list named `name`, created on first use.
    ///
    /// # Errors
    /// As [`dict_named`](Self::dict_named).
    pub fn list_named<T: Serialize + DeserializeOwned>(
        &self,
        name: &str,
    ) -> Result<ListProxy<T>, ProxyError> {
        self.list_maybe_named(Some(name))
    }

    fn list_maybe_named<T: Serialize + DeserializeOwned>(
        &self,
        name: Option<&str>,
    ) -> Result<ListProxy<T>, ProxyError> {
        Ok(ListProxy {
            base: self.create(
                Kind::List,
                std::any::type_name::<T>().into(),
                name,
                Vec::new(),
                0,
            )?,
            _t: PhantomData,
        })
    }

    /// A new namespace (`manager.Namespace()`).
    ///
    /// # Errors
    /// As [`dict`](Self::dict).
    pub fn namespace(&self) -> Result<NamespaceProxy, ProxyError> {
        Ok(NamespaceProxy {
            base: self.create(Kind::Dict, "Namespace".into(), None, Vec::new(), 0)?,
            _t: PhantomData,
        })
    }

    /// The namespace named `name`, created on first use.
    ///
    /// # Errors
    /// As [`dict_named`](Self::dict_named).
    pub fn namespace_named(&self, name: &str) -> Result<NamespaceProxy, ProxyError> {
        Ok(NamespaceProxy {
            base: self.create(Kind::Dict, "Namespace".into(), Some(name), Vec::new(), 0)?,
            _t: PhantomData,
        })
    }

    /// A new value (`manager.Value(typecode, value)`).
    ///
    /// # Errors
    /// As [`dict`](Self::dict).
    pub fn value<T: Serialize + DeserializeOwned>(
        &self,
        init: &T,
    ) -> Result<ValueProxy<T>, ProxyError> {
        Ok(ValueProxy {
            base: self.create(
                Kind::Value,
                std::any::type_name::<T>().into(),
                None,
                enc(init)?,
                0,
            )?,
            _t: PhantomData,
        })
    }

    /// A user type registered under `typeid` (`BaseManager.register`):
    /// the object named `typeid`, created from `init` on first use and found
    /// by every later call (in any process) with the same type; methods run
    /// through [`ValueProxy::update_with`], atomically.
    ///
    /// # Errors
    /// [`RemoteError::WrongType`] when `typeid` holds another type; as
    /// [`dict`](Self::dict).
    pub fn register<T: Serialize + DeserializeOwned>(
        &self,
        typeid: &str,
        init: &T,
    ) -> Result<ValueProxy<T>, ProxyError> {
        Ok(ValueProxy {
            base: self.create(
                Kind::Value,
                std::any::type_name::<T>().into(),
                Some(&format!("register:{typeid}")),
                enc(init)?,
                0,
            )?,
            _t: PhantomData,
        })
    }

    /// A new queue (`manager.Queue(maxsize)`; 0: unbounded).
    ///
    /// # Errors
    /// As [`dict`](Self::dict).
    pub fn queue<T: Serialize + DeserializeOwned>(
        &self,
        maxsize: usize,
    ) -> Result<QueueProxy<T>, ProxyError> {
        self.queue_maybe_named(None, maxsize)
    }

    /// The queue named `name`, created on first use.
    ///
    /// # Errors
    /// As [`dict_named`](Self::dict_named).
    pub fn queue_named<T: Serialize + DeserializeOwned>(
        &self,
        name: &str,
        maxsize: usize,
    ) -> Result<QueueProxy<T>, ProxyError> {
        self.queue_maybe_named(Some(name), maxsize)
    }

    fn queue_maybe_named<T: Serialize + DeserializeOwned>(
        &self,
        name: Option<&str>,
        maxsize: usize,
    ) -> Result<QueueProxy<T>, ProxyError> {
        Ok(QueueProxy {
            base: self.create(
                Kind::Queue,
                std::any::type_name::<T>().into(),
                name,
                Vec::new(),
                maxsize as u64,
            )?,
            _t: PhantomData,
        })
    }

    /// A new lock (`manager.Lock()`).
    ///
    /// # Errors
    /// As [`dict`](Self::dict).
    pub fn lock(&self) -> Result<LockProxy, ProxyError> {
        Ok(LockProxy {
            base: self.create(Kind::Lock, "Lock".into(), None, Vec::new(), 0)?,
            _t: PhantomData,
        })
    }

    /// A new event (`manager.Event()`).
    ///
    /// # Errors
    /// As [`dict`](Self::dict).
    pub fn event(&self) -> Result<EventProxy, ProxyError> {
        Ok(EventProxy {
            base: self.create(Kind::Event, "Event".into(), None, Vec::new(), 0)?,
            _t: PhantomData,
        })
    }

    /// A new reentrant lock (`manager.RLock()`).
    ///
    /// # Errors
    /// As [`dict`](Self::dict).
    pub fn rlock(&self) -> Result<RLockProxy, ProxyError> {
        Ok(RLockProxy {
            base: self.create(Kind::RLock, "RLock".into(), None, Vec::new(), 0)?,
            _t: PhantomData,
        })
    }

    /// A new condition variable with its own reentrant lock
    /// (`manager.Condition()`).
    ///
    /// # Errors
    /// As [`dict`](Self::dict).
    pub fn condition(&self) -> Result<ConditionProxy, ProxyError> {
        Ok(ConditionProxy {
            base: self.create(Kind::Condition, "Condition".into(), None, Vec::new(), 0)?,
            _t: PhantomData,
        })
    }

    /// A new semaphore of `value` permits (`manager.Semaphore(value)`).
    ///
    /// # Errors
    /// As [`dict`](Self::dict).
    pub fn semaphore(&self, value: usize) -> Result<SemaphoreProxy, ProxyError> {
        Ok(SemaphoreProxy {
            base: self.create(
                Kind::Semaphore,
                "Semaphore".into(),
                None,
                vec![0],
                value as u64,
            )?,
            _t: PhantomData,
        })
    }

    /// A new bounded semaphore (`manager.BoundedSemaphore(value)`):
    /// releasing above `value` is [`RemoteError::TooManyReleases`].
    ///
    /// # Errors
    /// As [`dict`](Self::dict).
    pub fn bounded_semaphore(&self, value: usize) -> Result<SemaphoreProxy, ProxyError> {
        Ok(SemaphoreProxy {
            base: self.create(
                Kind::Semaphore,
                "Semaphore".into(),
                None,
                vec![1],
                value as u64,
            )?,
            _t: PhantomData,
        })
    }

    /// A new barrier for `parties` parties (`manager.Barrier(parties)`).
    ///
    /// # Errors
    /// [`RemoteError::BadRequest`] for 0 parties; as [`dict`](Self::dict).
    pub fn barrier(&self, parties: usize) -> Result<BarrierProxy, ProxyError> {
        Ok(BarrierProxy {
            base: self.create(
                Kind::Barrier,
                "Barrier".into(),
                None,
                Vec::new(),
                parties as u64,
            )?,
            _t: PhantomData,
        })
    }

    /// Whether this handle's calls go over a shared-memory pipe now (a
    /// local server, after the first [`wire::PIPE_AFTER`] calls); for
    /// tests and benchmarks.
    #[doc(hidden)]
    pub fn served_over_pipe(&self) -> bool {
        self.h.over_pipe()
    }

    /// How many objects the server holds now, named ones included: a leak
    /// check (an object no container or proxy refers to any more is gone).
    ///
    /// # Errors
    /// The server is gone or timed out.
    pub fn object_count(&self) -> Result<usize, ProxyError> {
        match self.h.call(&Request::Count)? {
            Reply::U64(n) => Ok(usize::try_from(n).unwrap_or(usize::MAX)),
            r => Err(ProxyError::Remote(RemoteError::BadRequest(format!(
                "unexpected reply {r:?}"
            )))),
        }
    }

    /// Stops the server (`manager.shutdown()`) and, when this process
    /// started it, waits for it to exit. Proxies left over get errors.
    ///
    /// # Errors
    /// [`ManagerError::Proxy`] when the server is already gone (it is then
    /// reaped anyway); [`ManagerError::Timeout`] when it does not exit in
    /// time (it is killed).
    pub fn shutdown(mut self) -> Result<(), ManagerError> {
        self.stop()
    }

    fn stop(&mut self) -> Result<(), ManagerError> {
        let sent = self.h.call(&Request::Shutdown);
        let Some(p) = self.server.take() else {
            return sent.map(drop).map_err(ManagerError::from);
        };
        let joined = p.join_timeout(self.h.timeout);
        if joined.is_err() {
            let _ = p.kill();
            let _ = p.join_timeout(self.h.timeout);
        }
        // A server that was killed could not remove its socket file.
        if let Some(Address::Unix(path)) = self.addresses.first() {
            let _ = std::fs::remove_file(path);
        }
        match joined {
            Err(_) => Err(ManagerError::Timeout),
            Ok(_) => sent.map(drop).map_err(ManagerError::from),
        }
    }
}

impl Drop for Manager {
    fn drop(&mut self) {
        if self.server.is_some() {
            if let Err(e) = self.stop() {
                eprintln!("shmproc: manager shutdown: {e}");
            }
        }
    }
}
