//! Shared-memory segments for shmproc: the bottom layer of Python's
//! `multiprocessing` for Rust.
//!
//! A **segment** is a named (`shm_open`, visible as `/dev/shm/<name>`) or
//! anonymous (`memfd`) piece of shared memory. It starts with a 64-byte
//! [`SegmentHeader`] (magic, layout version, kind, type fingerprint, length,
//! a publication state and the creator's pid); the payload follows at
//! [`DATA_OFFSET`]. Any process that knows the name can open it; the opener
//! waits (bounded) for the creator to publish and validates every header field
//! against the real size of the mapping, so a segment of the wrong kind or
//! type, a truncated one or a corrupt one is a typed [`SegmentError`], never
//! undefined behaviour.
//!
//! Python equivalent: `multiprocessing.shared_memory.SharedMemory` (raw
//! bytes), `multiprocessing.sharedctypes.RawValue` / `RawArray` ([`ShmBox`],
//! [`ShmSlice`]).
//!
//! ```text
//!  0        64        128                                 segment_len
//!  +--------+---------+-----------------------------------+
//!  | header | spare   | payload (128-byte aligned)        |
//!  +--------+---------+-----------------------------------+
//! ```
//!
//! - Segments are created `O_EXCL`, mode `0600`, with their space reserved by
//!   `posix_fallocate`: a full `/dev/shm` is [`SegmentError::NoSpace`] at create,
//!   never a `SIGBUS` later.
//! - The creator unlinks the name when its handle drops, unless it calls
//!   [`Segment::persist`]; openers only unmap.
//! - [`os`] holds every system call of the workspace; [`sync`] is the
//!   atomics shim (`std`, or `loom` under `cfg(shmproc_loom)`).
//! - [`OwnerRecord::is_alive`] is the one rule that says whether an owner
//!   (of a lock, a claim, a segment) is alive; [`cleanup`] lists the
//!   segments in `/dev/shm` and removes those whose creator died.
//!
//! # Examples
//! ```
//! # fn main() -> Result<(), shmproc_shm::SegmentError> {
//! use shmproc_shm::{ShmSlice, SegmentName};
//!
//! let name = SegmentName::unique("doc");
//! // One process creates...
//! let squares = ShmSlice::create(name.as_str(), 8, 0u64)?;
//! // ...another (here the same one) opens it by name and writes in place.
//! let view = ShmSlice::<u64>::open(name.as_str())?;
//! for i in 0..view.len() {
//!     view.set(i, (i * i) as u64).expect("in bounds");
//! }
//! assert_eq!(squares.get(7), Some(49));
//! // Opening with the wrong element type is an error, not a reinterpretation.
//! assert!(ShmSlice::<f64>::open(name.as_str()).is_err());
//! # Ok(()) }
//! ```
#![deny(unsafe_op_in_unsafe_fn)]
#![deny(clippy::indexing_slicing)]

pub mod cleanup;
mod error;
mod header;
pub mod inspect;
mod layout;
mod name;
mod object;
pub mod os;
mod owner;
mod region;
mod segment;
pub mod sync;
pub mod transfer;
mod view;

mod fuzzing;

/// Not API: what the fuzz targets (`fuzz/`) and the corpus replay tests
/// call. No semver promise.
#[doc(hidden)]
pub mod __private {
    pub use crate::fuzzing::segment_open;
    pub use crate::layout::shm_safe_field;
}

pub use error::{IndexError, NameError, OffsetError, SegmentError, SetupError};
pub use header::{
    DATA_OFFSET, FLAG_PERSISTENT, HEADER_LEN, HeaderFields, LAYOUT_VERSION, MAGIC,
    STATE_INITIALIZING, STATE_POISONED, STATE_READY, STATE_UNINIT, SegmentHeader, SegmentKind,
    TypeSpec,
};
pub use layout::{Offset, ShmSafe};
pub use name::{MAX_NAME_LEN, NAME_PREFIX, SegmentName};
pub use object::{SharedObject, Source};
pub use owner::OwnerRecord;
pub use region::{OutOfBounds, ShmRegion};
pub use segment::{
    DEFAULT_INIT_TIMEOUT, MAX_SEGMENT_LEN, OpenOptions, PeekedHeader, PendingSegment, Segment,
    SegmentLayout, set_session_provider,
};
pub use view::{ShmBox, ShmSlice};

pub use bytemuck::{Pod, Zeroable};
