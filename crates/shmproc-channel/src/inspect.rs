//! Queues and pipes read from a copy of their segments, for tools
//! (`shmproc ls`, `shmproc inspect`): a queue's indices, leases and
//! sleepers, a pipe's ends and rings, each field checked on its own.
//!
//! The input is a [`Snapshot`](shmproc_shm::inspect::Snapshot): bytes read
//! through a read-only descriptor, never a mapping, and never trusted. A
//! value no process writes is a [`Problem`](shmproc_shm::inspect::Problem)
//! naming the field; no input makes these functions panic.
//!
//! # Examples
//! ```
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use shmproc_channel::{Queue, inspect};
//! use shmproc_shm::{SegmentName, inspect::Snapshot};
//!
//! let name = SegmentName::unique("doc-inspect");
//! let q = Queue::<u32>::create(name.as_str(), 4)?;
//! q.put(7)?;
//! let report = inspect::inspect_ring(&Snapshot::read(name.as_str(), 4096)?);
//! assert!(report.problems.is_empty());
//! assert_eq!(report.ring.map(|r| r.len), Some(1));
//! # Ok(()) }
//! ```

pub use crate::pipe::inspect::{PipeEndState, PipeReport, PipeRingState, PipeState, inspect_pipe};
pub use crate::ring::inspect::{RingReport, RingState, Sleeper, inspect_ring};
