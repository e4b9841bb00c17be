//! Errors of segment creation, opening and typed access.

use std::fmt;
use std::io;
use std::time::Duration;

use crate::header::{SegmentKind, TypeSpec};

/// Why a segment name was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum NameError {
    /// The name is empty (or only `/`).
    Empty,
    /// The name is longer than the limit.
    TooLong {
        /// Length found, in bytes, without the leading `/`.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The name has a `/` after the first byte.
    Slash,
    /// The name has a NUL byte.
    Nul,
    /// The name is `.` or `..`.
    Dot,
}

impl fmt::Display for NameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NameError::Empty => f.write_str("the name is empty"),
            NameError::TooLong { len, max } => {
                write!(
                    f,
                    "the name is {len} bytes long, more than the limit of {max}"
                )
            }
            NameError::Slash => f.write_str("the name contains a '/' after the leading one"),
            NameError::Nul => f.write_str("the name contains a NUL byte"),
            NameError::Dot => f.write_str("the name is '.' or '..'"),
        }
    }
}

/// An error creating, opening or validating a segment. Every message names
/// the segment (`'/name'`, or the fd of an anonymous one) and the problem;
/// OS errors are kept as the [`source`](std::error::Error::source).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SegmentError {
    /// The name is not a valid shared-memory name.
    #[error("invalid segment name {name:?}: {reason}")]
    InvalidName {
        /// The name as given.
        name: String,
        /// What is wrong with it.
        reason: NameError,
    },
    /// A segment of size 0 was requested.
    #[error("segment {name}: size 0 requested; a segment needs a payload of at least one byte")]
    ZeroSize {
        /// The segment.
        name: String,
    },
    /// The requested size does not fit the address space.
    #[error(
        "segment {name}: {requested} bytes requested, more than the largest possible mapping ({max} bytes)"
    )]
    TooLarge {
        /// The segment.
        name: String,
        /// Bytes requested.
        requested: u64,
        /// The largest size possible.
        max: u64,
    },
    /// Not enough space in `/dev/shm` (or memory for an anonymous segment).
    #[error(
        "segment {name}: no space for {requested} bytes in /dev/shm ({available} bytes available of {total})"
    )]
    NoSpace {
        /// The segment.
        name: String,
        /// Bytes requested.
        requested: u64,
        /// Bytes available when it failed (0 when unknown).
        available: u64,
        /// Size of the filesystem (0 when unknown or unlimited).
        total: u64,
        /// The OS error (`ENOSPC` or `ENOMEM`).
        #[source]
        source: io::Error,
    },
    /// No segment has this name.
    #[error("segment {name} does not exist")]
    NotFound {
        /// The segment.
        name: String,
        /// The OS error (`ENOENT`).
        #[source]
        source: io::Error,
    },
    /// A segment with this name exists already.
    #[error("segment {name} already exists")]
    AlreadyExists {
        /// The segment.
        name: String,
        /// The OS error (`EEXIST`).
        #[source]
        source: io::Error,
    },
    /// The segment belongs to someone this process may not access.
    #[error(
        "segment {name}: permission denied (segments are created with mode 0600, for their owner only)"
    )]
    PermissionDenied {
        /// The segment.
        name: String,
        /// The OS error (`EACCES` or `EPERM`).
        #[source]
        source: io::Error,
    },
    /// The segment holds another kind of object.
    #[error("segment {name} holds a {found}, not a {expected}")]
    WrongKind {
        /// The segment.
        name: String,
        /// Kind in the header.
        found: SegmentKind,
        /// Kind the opener asked for.
        expected: SegmentKind,
    },
    /// The segment holds elements of another type (or another slot layout).
    #[error(
        "segment {name} holds {found_type} (fingerprint {found:#018x}), not {expected} (fingerprint {expected_fingerprint:#018x})",
        found_type = found_type.as_deref().map_or_else(|| "another element type".to_owned(), |t| format!("`{t}`"))
    )]
    WrongType {
        /// The segment.
        name: String,
        /// The element type its creator recorded (module paths left out),
        /// when it recorded one that reads as text.
        found_type: Option<String>,
        /// Fingerprint in the header.
        found: u64,
        /// The type the opener asked for.
        expected: TypeSpec,
        /// Its fingerprint.
        expected_fingerprint: u64,
    },
    /// The segment holds another number of elements than the opener asked for.
    #[error("segment {name} holds {found} elements, not {expected}")]
    WrongLength {
        /// The segment.
        name: String,
        /// Capacity in the header.
        found: u64,
        /// Capacity the opener asked for.
        expected: u64,
    },
    /// The segment is shorter than its header (or than its header says).
    #[error("segment {name} is truncated: {len} bytes, but at least {needed} are needed")]
    Truncated {
        /// The segment.
        name: String,
        /// Its real size.
        len: u64,
        /// The size needed.
        needed: u64,
    },
    /// A header field holds a value no valid segment has.
    #[error("segment {name} is corrupt: {field} is {found:#x}, expected {expected:#x}")]
    Corrupt {
        /// The segment.
        name: String,
        /// Which field.
        field: &'static str,
        /// Value found.
        found: u64,
        /// Value expected.
        expected: u64,
    },
    /// The segment was made by an incompatible version of shmproc.
    #[error("segment {name} has layout version {found}, this build reads version {expected}")]
    VersionMismatch {
        /// The segment.
        name: String,
        /// Version in the header.
        found: u32,
        /// Version this build writes and reads.
        expected: u32,
    },
    /// The creator did not finish initialising within the open timeout.
    #[error("segment {name} is still being initialised after {waited:?} (state {state})")]
    InitTimeout {
        /// The segment.
        name: String,
        /// How long the opener waited.
        waited: Duration,
        /// The state word last seen.
        state: u32,
    },
    /// The creator failed or died during initialisation.
    #[error("segment {name} was never initialised: its creator (pid {creator_pid}) {what}")]
    Poisoned {
        /// The segment.
        name: String,
        /// Pid of the creator, from the header.
        creator_pid: u32,
        /// "gave up" or "died".
        what: &'static str,
    },
    /// Another OS error.
    #[error("segment {name}: {op} failed")]
    Io {
        /// The segment.
        name: String,
        /// The call that failed.
        op: &'static str,
        /// The OS error.
        #[source]
        source: io::Error,
    },
}

impl SegmentError {
    /// Maps an OS error from `op` on segment `name` to its variant.
    pub(crate) fn from_os(name: &str, op: &'static str, source: io::Error) -> Self {
        let name = name.to_owned();
        match source.raw_os_error() {
            Some(libc::ENOENT) => SegmentError::NotFound { name, source },
            Some(libc::EEXIST) => SegmentError::AlreadyExists { name, source },
            Some(libc::EACCES | libc::EPERM) => SegmentError::PermissionDenied { name, source },
            _ => SegmentError::Io { name, op, source },
        }
    }

    /// The segment the error is about, as shown in the message.
    pub fn segment(&self) -> &str {
        match self {
            SegmentError::InvalidName { name, .. }
            | SegmentError::ZeroSize { name }
            | SegmentError::TooLarge { name, .. }
            | SegmentError::NoSpace { name, .. }
            | SegmentError::NotFound { name, .. }
            | SegmentError::AlreadyExists { name, .. }
            | SegmentError::PermissionDenied { name, .. }
            | SegmentError::WrongKind { name, .. }
            | SegmentError::WrongType { name, .. }
            | SegmentError::WrongLength { name, .. }
            | SegmentError::Truncated { name, .. }
            | SegmentError::Corrupt { name, .. }
            | SegmentError::VersionMismatch { name, .. }
            | SegmentError::InitTimeout { name, .. }
            | SegmentError::Poisoned { name, .. }
            | SegmentError::Io { name, .. } => name,
        }
    }
}

/// An [`Offset`](crate::Offset) or index that does not resolve inside a
/// segment's payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum OffsetError {
    /// The range `offset .. offset + len` leaves the payload.
    #[error("offset {offset} + {len} bytes is outside the payload ({start}..{end})")]
    OutOfBounds {
        /// The offset from the segment base.
        offset: u64,
        /// Bytes needed there.
        len: u64,
        /// First payload byte.
        start: u64,
        /// One past the last payload byte.
        end: u64,
    },
    /// The offset is not aligned for the type.
    #[error("offset {offset} is not aligned to {align} bytes")]
    Misaligned {
        /// The offset from the segment base.
        offset: u64,
        /// Alignment required.
        align: u64,
    },
}

/// An index past the end of a [`ShmSlice`](crate::ShmSlice).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("index range {start}..{end} is out of bounds for a slice of length {len}")]
pub struct IndexError {
    /// First index asked for.
    pub start: usize,
    /// One past the last index asked for.
    pub end: usize,
    /// Length of the slice.
    pub len: usize,
}

/// Creating or opening any shmproc object failed: the one setup error of
/// the workspace (`SyncError`, `QueueError` and `ConnectionError` are this
/// type under their crates' names).
///
/// Its message says what failed and why, once ("cannot open Queue: segment
/// /x does not exist"); [`source`](std::error::Error::source) is the cause
/// behind that, the OS error where there is one.
#[derive(Debug)]
#[non_exhaustive]
pub enum SetupError {
    /// The segment could not be created or opened, or holds something else
    /// (not found, another kind, element type or length, truncated, ...).
    Segment {
        /// `"create"`, `"open"` or `"share"`.
        op: &'static str,
        /// The object, e.g. `"Lock"`, `"Queue"`.
        what: &'static str,
        /// The segment layer's error (boxed: it is large, and setup is rare).
        source: Box<SegmentError>,
    },
    /// An argument is out of range (a capacity of 0, a barrier of 0
    /// parties, ...).
    InvalidArgument {
        /// The object.
        what: &'static str,
        /// What is wrong, and the range allowed.
        detail: String,
    },
    /// The segment passed validation, but its contents do not describe a
    /// valid object (written by a buggy or hostile process).
    Corrupt {
        /// The segment (empty when not known where it was found).
        name: String,
        /// Which field.
        what: &'static str,
        /// The value found.
        found: u64,
    },
    /// A system call failed.
    Os {
        /// The call.
        op: &'static str,
        /// The OS error.
        source: io::Error,
    },
    /// The object could not be taken over in this process (a pipe end
    /// another process uses now, ...).
    Unavailable {
        /// The object.
        what: &'static str,
        /// Why.
        source: Box<dyn std::error::Error + Send + Sync + 'static>,
    },
}

impl SetupError {
    /// Maps a segment error of `op` on the object `what`.
    pub fn segment(op: &'static str, what: &'static str) -> impl FnOnce(SegmentError) -> Self {
        move |e| SetupError::Segment {
            op,
            what,
            source: Box::new(e),
        }
    }

    /// An [`InvalidArgument`](Self::InvalidArgument) error.
    pub fn invalid(what: &'static str, detail: impl Into<String>) -> Self {
        SetupError::InvalidArgument {
            what,
            detail: detail.into(),
        }
    }

    /// Maps the OS error of the call `op`.
    pub fn os(op: &'static str) -> impl FnOnce(io::Error) -> Self {
        move |source| SetupError::Os { op, source }
    }

    /// The segment error behind a [`Segment`](Self::Segment) error.
    pub fn segment_error(&self) -> Option<&SegmentError> {
        match self {
            SetupError::Segment { source, .. } => Some(source),
            _ => None,
        }
    }
}

impl fmt::Display for SetupError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SetupError::Segment { op, what, source } => write!(f, "cannot {op} {what}: {source}"),
            SetupError::InvalidArgument { what, detail } => write!(f, "invalid {what}: {detail}"),
            SetupError::Corrupt { name, what, found } if name.is_empty() => {
                write!(f, "shared memory is corrupt: {what} is {found:#x}")
            }
            SetupError::Corrupt { name, what, found } => {
                write!(f, "segment {name} is corrupt: {what} is {found:#x}")
            }
            SetupError::Os { op, .. } => write!(f, "{op} failed"),
            SetupError::Unavailable { what, source } => {
                write!(f, "cannot take over {what}: {source}")
            }
        }
    }
}

impl std::error::Error for SetupError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            // The segment error's text is in the message: the chain goes on
            // with its cause (the OS error), said once.
            SetupError::Segment { source, .. } => std::error::Error::source(source.as_ref()),
            SetupError::Os { source, .. } => Some(source),
            // Its text is in the message too: nothing more to chain.
            _ => None,
        }
    }
}
