//! One shape for every object that lives in a segment: where an existing one
//! is found ([`Source`]) and what every such object can do ([`SharedObject`]).
//!
//! Every shmproc object (`Value`, `Lock`, `Queue`, a pipe's `Connection`,
//! [`ShmBox`](crate::ShmBox), ...) follows one constructor rule:
//! - `new(..)`: a new object in an anonymous segment (`memfd`), shared by
//!   `fork` or by handing it to a child;
//! - `create(name, ..)`: a new object in the named segment `name`, which any
//!   process of the same user can open; dropping the creator unlinks the name
//!   unless the segment is persisted;
//! - `open(name)` / `open_fd(fd)`: an existing object, checked on open
//!   (kind, element type, size), as an opener that never unlinks.
//!
//! [`SharedObject`] is the trait behind `open` and `open_fd`: with it, any such
//! object passes to a child process as a handle and is reopened there
//! ([`Transfer`](crate::transfer::Transfer) has one blanket impl for every
//! `SharedObject`), and [`try_clone`](SharedObject::try_clone) gives a second
//! handle in this process. A new shared type implements two methods,
//! [`segment`](SharedObject::segment) and
//! [`open_source`](SharedObject::open_source): everything else follows.

use std::os::fd::OwnedFd;

use crate::segment::{OpenOptions, Segment};
use crate::{SegmentError, SegmentName};

/// Where an existing object is found: the name of its segment, or a
/// descriptor of it (Python's `SharedMemory(name)` versus an inherited one).
#[derive(Debug)]
#[non_exhaustive]
pub enum Source<'a> {
    /// The named segment `/dev/shm/<name>`.
    Name(&'a str),
    /// A descriptor of the segment: an anonymous segment's, or a named one
    /// whose name is unknown.
    Fd(OwnedFd),
    /// A descriptor of the named segment `name`, received from another
    /// process: opened through the descriptor (so it works even after the
    /// creator unlinked the name, and can never find another segment that
    /// took the name since), and known by the name.
    NamedFd(&'a str, OwnedFd),
}

impl Source<'_> {
    /// The segment's name, where the source has one.
    pub fn name(&self) -> Option<&str> {
        match self {
            Source::Name(n) | Source::NamedFd(n, _) => Some(n),
            Source::Fd(_) => None,
        }
    }
}

impl OpenOptions {
    /// Opens the segment `source` names, with these expectations.
    ///
    /// # Errors
    /// As [`Segment::open`].
    pub fn open_source(&self, source: Source<'_>) -> Result<Segment, SegmentError> {
        match source {
            Source::Name(name) => self.open(name),
            Source::Fd(fd) => self.open_fd(fd),
            Source::NamedFd(name, fd) => {
                let name = SegmentName::new(name)?;
                self.open_fd_named(fd, name)
            }
        }
    }
}

/// An object that lives in a shared-memory segment and can be opened again
/// from it, in this process or another (iceoryx2's `NamedConcept`; Python
/// pickles these by handle).
///
/// Implementing it takes [`segment`](Self::segment) and
/// [`open_source`](Self::open_source); objects that come in several views of
/// one segment (a pipe's two ends) also override [`role`](Self::role) and
/// [`open_as`](Self::open_as), and objects with a per-process claim the
/// hand-over hooks.
pub trait SharedObject: Sized {
    /// The type's name in messages (`"Queue"`).
    const WHAT: &'static str;

    /// What opening one can fail with.
    type Error: std::error::Error + Send + Sync + 'static;

    /// The segment the object lives in.
    fn segment(&self) -> &Segment;

    /// Opens the existing object `source` names, as an opener (never the
    /// owner): its kind, element type and size are checked.
    ///
    /// # Errors
    /// When the segment is missing, of another kind or type, or corrupt.
    fn open_source(source: Source<'_>) -> Result<Self, Self::Error>;

    /// The segment's name, for a named object (`None` for an anonymous one).
    fn name(&self) -> Option<&str> {
        self.segment().name().map(SegmentName::as_str)
    }

    /// Which view of the segment this handle is (a pipe's end); 0 for an
    /// object with one view.
    fn role(&self) -> u8 {
        0
    }

    /// Opens the view `role` (from [`role`](Self::role) in the sender);
    /// `None` when `role` is not one of this type's views.
    fn open_as(source: Source<'_>, role: u8) -> Option<Result<Self, Self::Error>> {
        (role == 0).then(|| Self::open_source(source))
    }

    /// Runs in the sending process when a handle to this object is packed for
    /// another process (a pipe end gives up its claim). Nothing by default.
    fn hand_over(&self) {}

    /// Runs in the receiving process right after it opened the object from
    /// a handle (a pipe end claims itself). Nothing by default.
    ///
    /// # Errors
    /// When the object cannot be taken over.
    fn take_over(&mut self) -> Result<(), Self::Error> {
        Ok(())
    }

    /// A second handle on the same object in this process (Python objects
    /// are shared by reference; here each handle maps the segment).
    ///
    /// # Errors
    /// When the descriptor cannot be duplicated or the reopen fails.
    fn try_clone(&self) -> Result<Self, TransferError> {
        let fd = self
            .segment()
            .fd()
            .try_clone_to_owned()
            .map_err(TransferError::Dup)?;
        let source = match self.name() {
            Some(name) => Source::NamedFd(name, fd),
            None => Source::Fd(fd),
        };
        let role = self.role();
        Self::open_as(source, role)
            .ok_or_else(|| TransferError::malformed(Self::WHAT, format!("role {role}")))?
            .map_err(TransferError::share::<Self>)
    }
}

/// Why a value could not be passed to another process.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TransferError {
    /// The encoded input is malformed (it came from another process).
    #[error("malformed argument {what}: {detail}")]
    Malformed {
        /// Which value.
        what: &'static str,
        /// What is wrong with it.
        detail: String,
    },
    /// A value could not be encoded (a serializer error).
    #[error("cannot encode argument {what}: {detail}")]
    Encode {
        /// Which value.
        what: &'static str,
        /// The serializer's message.
        detail: String,
    },
    /// A shared object could not be reopened from its handle.
    #[error("cannot open the {what} passed from another process")]
    Share {
        /// Which type.
        what: &'static str,
        /// Why.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync + 'static>,
    },
    /// A descriptor could not be duplicated.
    #[error("cannot duplicate a segment descriptor")]
    Dup(#[source] std::io::Error),
}

impl TransferError {
    /// A [`Malformed`](Self::Malformed) error.
    pub fn malformed(what: &'static str, detail: impl Into<String>) -> Self {
        TransferError::Malformed {
            what,
            detail: detail.into(),
        }
    }

    pub(crate) fn share<S: SharedObject>(e: S::Error) -> Self {
        TransferError::Share {
            what: S::WHAT,
            source: Box::new(e),
        }
    }
}
