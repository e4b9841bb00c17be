//! [`Shared<R>`]: one handle type for every object whose whole state is one
//! raw struct in its own segment (lock_api's `Mutex<R, T>` idea:
//! `type Lock = Shared<RawLock>`).
//!
//! A new object of that shape is its layout (a `#[repr(C)]`, [`ShmSafe`]
//! struct of atomics), its [`SegmentState`] impl (kind, name, init) and its
//! operations on the raw struct. `new`, `create`, `open`, `open_fd`, the
//! accessors, `Debug` and passing it to a child come from here.

use std::fmt;
use std::ops::Deref;
use std::os::fd::OwnedFd;

use shmproc_shm::{Segment, SegmentKind, SegmentName, SharedObject, ShmSafe, Source};

use crate::error::SyncError;
use crate::handle::{Handle, Place, fixed_layout, fixed_options};

/// The state of an object that lives alone in a segment.
pub trait SegmentState: ShmSafe + fmt::Debug + Sized {
    /// The segment kind recorded in the header and checked on open.
    const KIND: SegmentKind;
    /// The object's name in messages (`"Lock"`).
    const WHAT: &'static str;

    /// Initialises the zeroed state before the segment is published.
    /// Nothing by default: all-zero is the initial state.
    fn init(&self) {}
}

/// A handle on an object whose state `R` lives alone in a shared segment;
/// dereferences to `R`, which has the operations.
pub struct Shared<R> {
    h: Handle<R>,
}

impl<R: SegmentState> Shared<R> {
    fn create_at(place: Place<'_>) -> Result<Self, SyncError> {
        let h = Handle::create(
            place,
            R::WHAT,
            fixed_layout::<R>(R::KIND),
            |state: &R, _| {
                state.init();
                Ok(())
            },
        )?;
        Ok(Self { h })
    }

    /// A new object in an anonymous segment (share it by fork, or pass it to
    /// a child).
    ///
    /// # Errors
    /// [`SyncError::Segment`] when the segment cannot be created.
    pub fn new() -> Result<Self, SyncError> {
        Self::create_at(Place::Anonymous)
    }

    /// A new object in the named segment `name`; other processes
    /// [`open`](Self::open) it. Dropping this handle unlinks the name.
    ///
    /// # Errors
    /// [`SyncError::Segment`] (name taken, invalid, no space, ...).
    pub fn create(name: &str) -> Result<Self, SyncError> {
        Self::create_at(Place::Named(name))
    }

    /// Opens the object in the named segment `name`.
    ///
    /// # Errors
    /// [`SyncError::Segment`]: not found, another kind (`WrongKind`), corrupt, ...
    pub fn open(name: &str) -> Result<Self, SyncError> {
        Self::open_source(Source::Name(name))
    }

    /// Opens the object whose segment `fd` is.
    ///
    /// # Errors
    /// As [`open`](Self::open).
    pub fn open_fd(fd: OwnedFd) -> Result<Self, SyncError> {
        Self::open_source(Source::Fd(fd))
    }

    /// The shared state.
    pub fn raw(&self) -> &R {
        self.h.state()
    }

    /// The name, for a named object (`None` for an anonymous one).
    pub fn name(&self) -> Option<&str> {
        self.h.segment().name().map(SegmentName::as_str)
    }

    /// The underlying segment.
    pub fn segment(&self) -> &Segment {
        self.h.segment()
    }

    /// The underlying segment, to [`persist`](Segment::persist) it, say.
    pub fn segment_mut(&mut self) -> &mut Segment {
        self.h.segment_mut()
    }

    /// A duplicate of the segment's fd that a child started with `exec`
    /// inherits; the child passes it to [`open_fd`](Self::open_fd).
    ///
    /// # Errors
    /// [`SyncError::Segment`] when the fd cannot be duplicated.
    pub fn inheritable_fd(&self) -> Result<OwnedFd, SyncError> {
        self.h
            .segment()
            .inheritable_fd()
            .map_err(|source| SyncError::Segment {
                op: "share",
                what: R::WHAT,
                source: Box::new(source),
            })
    }
}

impl<R: SegmentState> SharedObject for Shared<R> {
    const WHAT: &'static str = R::WHAT;
    type Error = SyncError;

    fn segment(&self) -> &Segment {
        self.h.segment()
    }

    fn open_source(source: Source<'_>) -> Result<Self, SyncError> {
        let h = Handle::open(source, R::WHAT, fixed_options::<R>(R::KIND))?;
        Ok(Self { h })
    }
}

impl<R: SegmentState> Deref for Shared<R> {
    type Target = R;
    fn deref(&self) -> &R {
        self.h.state()
    }
}

impl<R: SegmentState> fmt::Debug for Shared<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct(R::WHAT)
            .field("segment", &self.h)
            .field("state", self.raw())
            .finish()
    }
}
