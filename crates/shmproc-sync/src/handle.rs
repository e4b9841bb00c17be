//! A segment holding one shared state struct at the start of its payload.

#![allow(unsafe_code)] // Turns a bounds-checked pointer into the mapping into `&S` for atomics-only `S`.

use std::fmt;
use std::ptr::NonNull;

use shmproc_shm::{
    OpenOptions, Segment, SegmentError, SegmentKind, SegmentLayout, ShmSafe, Source, TypeSpec,
};

use crate::error::SyncError;

/// Where a new object goes: a named segment or an anonymous one.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Place<'a> {
    Named(&'a str),
    Anonymous,
}

/// A mapped segment whose payload starts with an `S`.
pub(crate) struct Handle<S> {
    seg: Segment,
    ptr: NonNull<S>,
}

// SAFETY: `S: ShmSafe` is Sync and accessed only through `&S` (atomics); the
// segment itself is Send + Sync.
unsafe impl<S: ShmSafe> Send for Handle<S> {}
// SAFETY: as above.
unsafe impl<S: ShmSafe> Sync for Handle<S> {}

impl<S> fmt::Debug for Handle<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.seg.label())
    }
}

fn seg_err(op: &'static str, what: &'static str) -> impl FnOnce(SegmentError) -> SyncError {
    SyncError::segment(op, what)
}

impl<S: ShmSafe> Handle<S> {
    /// Creates the segment, runs `init` on the zeroed state (and segment)
    /// before publishing.
    pub(crate) fn create(
        place: Place<'_>,
        what: &'static str,
        layout: SegmentLayout,
        init: impl FnOnce(&S, &Segment) -> Result<(), SyncError>,
    ) -> Result<Self, SyncError> {
        let pending = match place {
            Place::Named(name) => Segment::create(name, &layout),
            Place::Anonymous => Segment::create_anonymous(&layout),
        }
        .map_err(seg_err("create", what))?;
        let ptr = Self::resolve(pending.segment(), what)?;
        // SAFETY: `resolve` checked bounds and alignment inside the mapping,
        // which lives as long as `pending`; `S: ShmSafe` is valid for any bits
        // (the payload is zeroed) and only mutated through atomics.
        init(unsafe { ptr.as_ref() }, pending.segment())?;
        // Dropping `pending` on an error above poisons and unlinks the segment.
        Ok(Self {
            seg: pending.publish(),
            ptr,
        })
    }

    /// Opens the segment `source` names with `opts`.
    pub(crate) fn open(
        source: Source<'_>,
        what: &'static str,
        opts: OpenOptions,
    ) -> Result<Self, SyncError> {
        let seg = opts.open_source(source).map_err(seg_err("open", what))?;
        let ptr = Self::resolve(&seg, what)?;
        Ok(Self { seg, ptr })
    }

    fn resolve(seg: &Segment, what: &'static str) -> Result<NonNull<S>, SyncError> {
        seg.resolve(shmproc_shm::Offset::<S>::in_payload(0))
            .map_err(|_| SyncError::Segment {
                op: "open",
                what,
                source: Box::new(SegmentError::Truncated {
                    name: seg.label().to_owned(),
                    len: seg.len() as u64,
                    needed: (shmproc_shm::DATA_OFFSET + size_of::<S>()) as u64,
                }),
            })
    }

    /// The shared state.
    #[inline]
    pub(crate) fn state(&self) -> &S {
        // SAFETY: resolved with bounds and alignment checks at create/open; the
        // mapping lives as long as `self.seg`; `S: ShmSafe` (atomics only).
        unsafe { self.ptr.as_ref() }
    }

    pub(crate) fn segment(&self) -> &Segment {
        &self.seg
    }

    pub(crate) fn segment_mut(&mut self) -> &mut Segment {
        &mut self.seg
    }
}

/// The options to open a fixed-size object of kind `kind` holding an `S`.
pub(crate) fn fixed_options<S>(kind: SegmentKind) -> OpenOptions {
    OpenOptions::new(kind, TypeSpec::of::<S>()).payload_len(|_| Some(size_of::<S>() as u64))
}

/// The layout of a fixed-size object of kind `kind` holding an `S`.
pub(crate) fn fixed_layout<S>(kind: SegmentKind) -> SegmentLayout {
    SegmentLayout::new(kind, TypeSpec::of::<S>(), size_of::<S>() as u64)
}

/// What every segment-backed object of this crate has, generated per type
/// from its private `from_source(Source) -> Result<Self, SyncError>`: `open`,
/// `open_fd`, the segment accessors and the [`SharedObject`](shmproc_shm::SharedObject)
/// impl that makes it passable to another process.
macro_rules! shared_object {
    ($ty:ident $(<$g:ident>)?, $what:literal) => {
        impl$(<$g: bytemuck::Pod>)? $ty$(<$g>)? {
            #[doc = concat!("Opens the ", $what, " in the named segment `name` (any process of this user).")]
            ///
            /// # Errors
            /// [`SyncError::Segment`] when the segment is missing, of another
            /// kind or element type, or corrupt; [`SyncError::Corrupt`] when
            /// its state breaks an invariant.
            pub fn open(name: &str) -> Result<Self, SyncError> {
                Self::from_source(shmproc_shm::Source::Name(name))
            }

            #[doc = concat!("Opens the ", $what, " whose segment `fd` is (an anonymous one passed by descriptor).")]
            ///
            /// # Errors
            /// As [`open`](Self::open).
            pub fn open_fd(fd: std::os::fd::OwnedFd) -> Result<Self, SyncError> {
                Self::from_source(shmproc_shm::Source::Fd(fd))
            }

            /// The name, for a named object (`None` for an anonymous one).
            pub fn name(&self) -> Option<&str> {
                self.h.segment().name().map(shmproc_shm::SegmentName::as_str)
            }

            /// The underlying segment.
            pub fn segment(&self) -> &shmproc_shm::Segment {
                self.h.segment()
            }

            /// The underlying segment, to [`persist`](shmproc_shm::Segment::persist) it, say.
            pub fn segment_mut(&mut self) -> &mut shmproc_shm::Segment {
                self.h.segment_mut()
            }

            /// A duplicate of the segment's fd that a child started with `exec`
            /// inherits; the child passes it to `open_fd`.
            ///
            /// # Errors
            /// [`SyncError::Segment`] when the fd cannot be duplicated.
            pub fn inheritable_fd(&self) -> Result<std::os::fd::OwnedFd, SyncError> {
                self.h.segment().inheritable_fd().map_err(|source| SyncError::Segment {
                    op: "share",
                    what: $what,
                    source: Box::new(source),
                })
            }
        }

        impl$(<$g: bytemuck::Pod>)? shmproc_shm::SharedObject for $ty$(<$g>)? {
            const WHAT: &'static str = $what;
            type Error = SyncError;

            fn segment(&self) -> &shmproc_shm::Segment {
                self.h.segment()
            }

            fn open_source(source: shmproc_shm::Source<'_>) -> Result<Self, SyncError> {
                Self::from_source(source)
            }
        }
    };
}
pub(crate) use shared_object;
