//! Python's `multiprocessing.shared_memory`, `managers` and `connection`
//! for shmproc.
//!
//! | Python | here |
//! |---|---|
//! | `shared_memory.SharedMemory(name, create=True, size=n)` | [`SharedMemory::create`], [`SharedMemory::open`], [`SharedMemory::new`] |
//! | `shared_memory.ShareableList([...])` | [`ShareableList::create`] (length-prefixed: trailing NULs and UTF-8 survive) |
//! | `managers.SharedMemoryManager()` | [`SharedMemoryManager::start`] (unlinks on shutdown and when its owner dies) |
//! | `multiprocessing.Manager()`: `dict`, `list`, `Namespace`, `Value`, `Queue`, `Lock`, `RLock`, `Condition`, `Semaphore`, `BoundedSemaphore`, `Barrier`, `Event`, `register` | [`Manager`] and its typed proxies ([`DictProxy`], ...): local clients over shared memory, remote ones over TCP; nested proxies (a dict of lists) |
//! | `connection.Listener(addr, authkey=k)` / `Client(addr, authkey=k)` | [`Listener`], [`Client`] (Python 3.12's HMAC-SHA256 handshake, byte for byte) |
//!
//! # Examples
//! ```
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use shmproc_manager::{Item, ShareableList};
//! let name = shmproc_shm::SegmentName::unique("doc-lib");
//! let sl = ShareableList::create(name.as_str(), [Item::from("a\0"), Item::Int(1)])?;
//! assert_eq!(sl.get(0)?, Item::from("a\0"));
//! # Ok(()) }
//! ```
#![forbid(unsafe_code)]

pub mod auth;
mod connection;
mod error;
pub mod manager;
mod shareable_list;
mod shared_memory;
mod smm;
mod spin;

pub use connection::{
    Address, Client, DEFAULT_HANDSHAKE_TIMEOUT, DEFAULT_MAX_MESSAGE_LEN, Listener,
    PendingConnection, SocketConnection,
};
pub use error::{AuthenticationError, ConnError, ManagerError, ProxyError, RemoteError};
pub use manager::{
    BarrierProxy, ConditionProxy, DEFAULT_CALL_TIMEOUT, DictProxy, EventProxy, ListProxy,
    LockProxy, Manager, ManagerBuilder, NamespaceProxy, QueueProxy, RLockProxy, SemaphoreProxy,
    ValueProxy,
};
pub use shareable_list::{Item, MAX_ITEMS, MIN_SLOT, ShareableList, ShareableListError};
pub use shared_memory::SharedMemory;
pub use smm::{SharedMemoryManager, WATCHER_JOIN_TIMEOUT};

/// What the fuzz targets (`fuzz/`) and their replay tests reach; not part
/// of the public API.
#[doc(hidden)]
pub mod __private {
    /// The `manager_frames` fuzz target: see `src/manager/fuzzing.rs`.
    pub fn manager_frames(data: &[u8]) {
        crate::manager::fuzzing::manager_frames(data);
    }
}
