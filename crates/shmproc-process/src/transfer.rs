//! Arguments that cross into a child: the codec lives in
//! [`shmproc_shm::transfer`] (one blanket impl makes every
//! [`SharedObject`](shmproc_shm::SharedObject) passable); this module
//! re-exports it for the start paths.

#[cfg(feature = "serde")]
pub use shmproc_shm::transfer::Serde;
pub(crate) use shmproc_shm::transfer::pack_args_as;
pub use shmproc_shm::transfer::{Packer, PassAs, PodArg, Transfer, TransferError, Unpacker};
