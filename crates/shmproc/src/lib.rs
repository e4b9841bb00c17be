//! Python's `multiprocessing`, for Rust, over shared memory, zero-copy.
//!
//! Every shmproc object lives in a shared-memory segment that any process of
//! the same user can open by name (not only children): a payload is written
//! once into shared memory and read in place. Shared memory is treated as
//! untrusted input: a segment of the wrong kind or type, a truncated or a
//! corrupt one gives a typed error, never undefined behaviour.
//!
//! # Python to shmproc
//!
//! | Python `multiprocessing` | shmproc | status |
//! |---|---|---|
//! | `shared_memory.SharedMemory(name, create=True, size=n)` | [`Segment::create`] + [`SegmentLayout`] (raw bytes), [`Segment::open`] | available |
//! | `sharedctypes.RawValue('d', 0.0)` | [`RawValue::<f64>::create(name, 0.0)`](ShmBox::create) (Python's name for [`ShmBox`]) | available |
//! | `sharedctypes.RawArray('i', 10)` | [`RawArray::<i32>::create(name, 10, 0)`](ShmSlice::create) (Python's name for [`ShmSlice`]) | available |
//! | passing any shared object to a child | every [`SharedObject`] is [`Transfer`]: `Process::new(f, (queue, lock))` | available |
//! | `Queue()` of any picklable object | `ObjQueue::<T: Serialize + DeserializeOwned>::new(maxsize)`: `put(&v)`, `get()`, ... (feature `serde`, on by default) | available |
//! | `SharedMemory.unlink()` | [`Segment::remove`], or drop the creator's handle | available |
//! | `cpu_count()` | [`cpu_count`] | available |
//! | `Value('Q', 0)`, `Array('d', n)`, `RawValue`, `RawArray` | [`Value`], [`Array`], [`RawValue`], [`RawArray`] | available |
//! | `Lock`, `RLock`, `Semaphore`, `BoundedSemaphore`, `Event`, `Condition`, `Barrier` | [`Lock`], [`RLock`], [`Semaphore`], [`BoundedSemaphore`], [`Event`], [`Condition`], [`Barrier`] | available |
//! | `shared_memory.SharedMemory`, `shared_memory.ShareableList` | [`SharedMemory`], [`ShareableList`] | available |
//! | `managers.SharedMemoryManager()` | [`SharedMemoryManager`] | available |
//! | `Manager()`: `dict`, `list`, `Namespace`, `Value`, `Queue`, `Lock`, `RLock`, `Condition`, `Semaphore`, `BoundedSemaphore`, `Barrier`, `Event`, `register` | [`Manager`] with typed proxies ([`DictProxy`], [`ListProxy`], ...) | available |
//! | `connection.Listener` / `Client` with `authkey` | [`Listener`], [`Client`] (Python 3.12's handshake) | available |
//!
//! The README's table lists the rest of `multiprocessing` and when it lands.
//!
//! # Examples
//! ```
//! # fn main() -> Result<(), shmproc::SegmentError> {
//! use shmproc::prelude::*;
//!
//! let name = SegmentName::unique("doc");
//! let counts = ShmSlice::create(name.as_str(), 4, 0u32)?;
//! // In another process: ShmSlice::<u32>::open(name)
//! let other = ShmSlice::<u32>::open(name.as_str())?;
//! other.set(2, 7).expect("in bounds");
//! assert_eq!(counts.to_vec(), [0, 0, 7, 0]);
//! # Ok(()) }
//! ```
#![forbid(unsafe_code)]

pub use shmproc_shm::{
    IndexError, NameError, OffsetError, OpenOptions, PendingSegment, Pod, Segment, SegmentError,
    SegmentKind, SegmentLayout, SegmentName, SetupError, SharedObject, ShmBox, ShmSlice, Source,
    TypeSpec, Zeroable,
};

pub use shmproc_sync::{
    Array, ArrayGuard, Barrier, BarrierWaitError, BoundedSemaphore, Condition, ConditionGuard,
    Event, Lock, LockGuard, LockResult, LockTimeoutError, NotifyError, OwnerDied, RLock,
    RLockGuard, RawArray, RawValue, ReleaseError, Semaphore, SetStrError, SyncError, Timeout,
    TryLockError, Value, ValueGuard, WouldBlock,
};

pub use shmproc_channel::{
    ByteQueue, BytesGuard, ClaimError, CommitError, Connection, ConnectionError, Corrupt, GetError,
    GetTimeoutError, JoinTimeoutError, JoinableQueue, MAX_MESSAGE_LEN, Pipe, PipeEnd, PipeMode,
    PollError, PutBytesError, PutBytesTimeoutError, PutError, PutTimeoutError, Queue, QueueError,
    ReadGuard, RecvError, RecvGuard, RecvTimeoutError, SendError, SendGuard, SendTimeoutError,
    SimpleQueue, TaskDoneError, TryGetError, TryPutBytesError, TryPutError, TryRecvError,
    TrySendError, WriteGuard, wait as wait_connections,
};

#[cfg(feature = "serde")]
pub use shmproc_channel::{
    GetObjError, GetObjTimeoutError, ObjQueue, PutObjError, PutObjTimeoutError, RecvObjError,
    SendObjError, TryGetObjError, TryPutObjError,
};

pub use shmproc_process::{
    Builder as ProcessBuilder, Context, DAEMON_TERMINATE_GRACE, Packer, ParentInfo, Pid, PodArg,
    Process, ProcessError, ProcessInfo, Serde, Shareable, StartMethod, Transfer, TransferError,
    Unpacker, active_children, available_cpu_count, cpu_count, current_process, default_context,
    get_all_start_methods, get_context, get_start_method, parent_process, reap_orphaned_segments,
    reap_segments_of, set_start_method, start_forkserver, tracker_session, wait,
};

pub use shmproc_pool::{AsyncResult, Callbacks, IMap, IMapUnordered, Pool, PoolBuilder, PoolError};

pub use shmproc_manager::{
    Address, AuthenticationError, BarrierProxy, Client, ConditionProxy, ConnError, DictProxy,
    EventProxy, Item, ListProxy, Listener, LockProxy, Manager, ManagerBuilder, ManagerError,
    NamespaceProxy, ProxyError, QueueProxy, RLockProxy, RemoteError, SemaphoreProxy, ShareableList,
    ShareableListError, SharedMemory, SharedMemoryManager, SocketConnection, ValueProxy,
};

/// Lower-level pieces: the segment header, offsets, the system-call module.
pub mod shm {
    pub use shmproc_shm::*;
}

/// `use shmproc::prelude::*;` brings what a user of Python's tutorial needs
/// into scope: processes, queues, pipes, shared values and the locks, and the
/// [`SharedObject`] trait (`name`, `try_clone` on every shared object).
pub mod prelude {
    pub use crate::{
        Array, Barrier, BoundedSemaphore, ByteQueue, Condition, Connection, Event, JoinableQueue,
        Lock, Manager, Pipe, Pool, Process, Queue, RLock, RawArray, RawValue, Segment, SegmentName,
        Semaphore, ShareableList, SharedMemory, SharedMemoryManager, SharedObject, ShmBox,
        ShmSlice, SimpleQueue, StartMethod, Value, active_children, available_cpu_count, cpu_count,
        current_process,
    };
}
