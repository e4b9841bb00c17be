//! [`SharedMemoryManager`]: Python's `managers.SharedMemoryManager`, which
//! unlinks every block it created when it shuts down, or when the process
//! that owns it dies.
//!
//! The blocks are created by the owning process itself (no round trip to a
//! server per block). A small watcher process, started with the manager,
//! learns each name through a [`Pipe`](shmproc_channel::Pipe); when the
//! owner closes the pipe (shutdown) or dies (the pipe's end reports EOF
//! once the owner's pid is gone, `SIGKILL` included), the watcher unlinks
//! every name it was told about and exits. The watcher is started without
//! a parent-death signal, so it outlives a killed owner long enough to
//! clean up.

use std::time::Duration;

use shmproc_channel::{Connection, Pipe, RecvTimeoutError};
use shmproc_process::{Process, default_context};
use shmproc_shm::SegmentName;

use crate::{Item, ManagerError, ShareableList, SharedMemory};

/// How long [`SharedMemoryManager::shutdown`] waits for the watcher.
pub const WATCHER_JOIN_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest name the watcher accepts from the pipe.
const MAX_NAME: usize = 256;

/// Creates [`SharedMemory`] blocks and [`ShareableList`]s and unlinks all of
/// them on [`shutdown`](Self::shutdown), on drop, or when this process dies
/// (Python's `SharedMemoryManager`).
///
/// The handles it returns are openers: dropping one does not remove the
/// block; the manager does, at shutdown (as Python's does).
///
/// # Examples
/// ```no_run
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use shmproc_manager::SharedMemoryManager;
/// let mut smm = SharedMemoryManager::start()?;
/// let block = smm.shared_memory(4096)?;
/// let list = smm.shareable_list(["a", "b"])?;
/// // ... hand `block.name()` / `list` to other processes ...
/// smm.shutdown()?; // both names are gone from /dev/shm
/// # Ok(()) }
/// ```
#[doc(alias = "managers.SharedMemoryManager")]
#[derive(Debug)]
pub struct SharedMemoryManager {
    conn: Option<Connection>,
    watcher: Option<Process>,
    owned: Vec<SharedMemory>,
}

/// The watcher: collects names until EOF (the owner closed its end or
/// died), then unlinks them all.
fn watch((mut conn,): (Connection,)) {
    let mut names = Vec::new();
    loop {
        match conn.recv_bytes_max_timeout(MAX_NAME, Duration::from_secs(1)) {
            Ok(b) => {
                if let Ok(name) = String::from_utf8(b) {
                    names.push(name);
                }
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(_) => break,
        }
    }
    for name in names {
        // NotFound: the owner unlinked it already (a clean shutdown).
        let _ = shmproc_shm::Segment::remove(&name);
    }
}

impl SharedMemoryManager {
    /// Starts the manager and its watcher process.
    ///
    /// # Errors
    /// When the pipe cannot be created or the watcher cannot start.
    pub fn start() -> Result<Self, ManagerError> {
        let (ours, theirs) = Pipe::new().map_err(ManagerError::setup)?;
        let ctx = default_context().parent_death_signal(None);
        let watcher = Process::builder()
            .name("shmproc-smm-watcher")
            .context(ctx)
            .target(watch, (theirs,))
            .start()
            .map_err(ManagerError::setup)?;
        Ok(Self {
            conn: Some(ours),
            watcher: Some(watcher),
            owned: Vec::new(),
        })
    }

    fn track(&mut self, name: &str) -> Result<(), ManagerError> {
        let conn = self.conn.as_mut().ok_or(ManagerError::Closed)?;
        conn.send_bytes_timeout(name.as_bytes(), WATCHER_JOIN_TIMEOUT)
            .map_err(ManagerError::setup)
    }

    /// A new block of `size` zero bytes with a fresh unique name
    /// (`smm.SharedMemory(size)`).
    ///
    /// # Errors
    /// As [`SharedMemory::create`]; [`ManagerError::Closed`] after shutdown.
    pub fn shared_memory(&mut self, size: usize) -> Result<SharedMemory, ManagerError> {
        let name = SegmentName::unique("smm");
        // Tracked before it exists: the watcher never misses a block.
        self.track(name.as_str())?;
        let owned = SharedMemory::create(name.as_str(), size).map_err(ManagerError::setup)?;
        let opener = SharedMemory::open(name.as_str()).map_err(ManagerError::setup)?;
        self.owned.push(owned);
        Ok(opener)
    }

    /// A new [`ShareableList`] holding `items` (`smm.ShareableList(items)`).
    ///
    /// # Errors
    /// As [`ShareableList::create`]; [`ManagerError::Closed`] after shutdown.
    pub fn shareable_list<I: Into<Item>>(
        &mut self,
        items: impl IntoIterator<Item = I>,
    ) -> Result<ShareableList, ManagerError> {
        let name = SegmentName::unique("smm");
        self.track(name.as_str())?;
        let list = ShareableList::create(name.as_str(), items).map_err(ManagerError::setup)?;
        let opener = ShareableList::open(name.as_str()).map_err(ManagerError::setup)?;
        // Keep the creator's handle (the owner, which unlinks).
        self.owned.push(list.into_shm());
        Ok(opener)
    }

    /// Names of the blocks created so far (and not yet released).
    pub fn names(&self) -> Vec<String> {
        self.owned
            .iter()
            .filter_map(|s| s.name().map(str::to_owned))
            .collect()
    }

    /// Unlinks every block, stops the watcher and waits for it.
    ///
    /// # Errors
    /// [`ManagerError::Timeout`] when the watcher does not exit in
    /// [`WATCHER_JOIN_TIMEOUT`]; the blocks are unlinked anyway.
    pub fn shutdown(mut self) -> Result<(), ManagerError> {
        self.stop()
    }

    fn stop(&mut self) -> Result<(), ManagerError> {
        self.owned.clear();
        if let Some(mut c) = self.conn.take() {
            c.close();
        }
        if let Some(w) = self.watcher.take() {
            match w.join_timeout(WATCHER_JOIN_TIMEOUT) {
                Ok(_) => {}
                Err(e) => {
                    let _ = w.kill();
                    return Err(ManagerError::setup(e));
                }
            }
        }
        Ok(())
    }
}

impl Drop for SharedMemoryManager {
    fn drop(&mut self) {
        if let Err(e) = self.stop() {
            eprintln!("shmproc: SharedMemoryManager shutdown: {e}");
        }
    }
}
