//! Segments: named (`shm_open`) and anonymous (`memfd`), created exclusive with
//! mode `0600` and space reserved up front, opened with full validation.

#![allow(unsafe_code)] // Maps segments and resolves offsets into them: raw pointers into shared memory.

use std::ffi::CStr;
use std::fmt;
use std::fs::File;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::ptr::NonNull;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use memmap2::{MmapOptions, MmapRaw};

use crate::error::{OffsetError, SegmentError};
use crate::header::{
    DATA_OFFSET, FLAG_PERSISTENT, HEADER_LEN, HeaderFields, LAYOUT_VERSION, MAGIC,
    STATE_INITIALIZING, STATE_POISONED, STATE_READY, STATE_UNINIT, SegmentHeader, SegmentKind,
    TypeSpec,
};
use crate::layout::{Offset, ShmSafe};
use crate::name::SegmentName;
use crate::os;
use crate::sync::real::Ordering;

/// How long [`Segment::open`] waits, by default, for a creator that is still
/// initialising the segment.
pub const DEFAULT_INIT_TIMEOUT: Duration = Duration::from_secs(2);

/// The largest segment this build can map.
pub const MAX_SEGMENT_LEN: u64 = isize::MAX as u64;

/// The function that names the crash-cleanup session of named segments this
/// process creates (see [`set_session_provider`]).
static SESSION_PROVIDER: OnceLock<fn() -> u64> = OnceLock::new();

/// Installs `provider`, called once per [`Segment::create`] (before the name
/// exists) for the session tag stored in the new segment's header
/// ([`SegmentHeader::session`]); 0 means none. Crash cleanup (a resource
/// tracker, in `shmproc-process`) removes the segments of a session whose
/// creator died, so the provider typically makes sure that tracker runs.
/// The first call wins; later ones return `false`. Anonymous segments have
/// no name to leak and are never tagged.
pub fn set_session_provider(provider: fn() -> u64) -> bool {
    SESSION_PROVIDER.set(provider).is_ok()
}

fn current_session() -> u64 {
    SESSION_PROVIDER.get().map_or(0, |f| f())
}

/// The header fields crash cleanup needs, read from a named segment's file
/// without mapping it ([`Segment::peek`]). Nothing here is validated beyond
/// the magic and layout version: the segment may be half-initialised, or
/// written by a hostile process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeekedHeader {
    /// The publication state (`STATE_*`).
    pub state: u32,
    /// What the header says the segment holds.
    pub kind: SegmentKind,
    /// The creator's pid as the header says.
    pub creator_pid: u32,
    /// Whether [`FLAG_PERSISTENT`] is set.
    pub persistent: bool,
    /// The creator's session tag, or 0.
    pub session: u64,
}

/// What a new segment holds: its kind, its element type and its payload size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentLayout {
    /// What the segment holds.
    pub kind: SegmentKind,
    /// The payload's element type and shape; its capacity goes in the header.
    pub ty: TypeSpec,
    /// Payload bytes after the header (must be at least 1).
    pub payload_len: u64,
}

impl SegmentLayout {
    /// A layout of `payload_len` bytes of `kind` holding `ty`.
    pub const fn new(kind: SegmentKind, ty: TypeSpec, payload_len: u64) -> Self {
        Self {
            kind,
            ty,
            payload_len,
        }
    }
}

/// What an opener expects to find; a mismatch is a typed error.
#[derive(Debug, Clone, Copy)]
pub struct OpenOptions {
    kind: SegmentKind,
    ty: TypeSpec,
    capacity: Option<u64>,
    payload_len: Option<fn(u64) -> Option<u64>>,
    init_timeout: Duration,
}

impl OpenOptions {
    /// Expect a segment of `kind` whose elements are `ty` (any capacity).
    pub const fn new(kind: SegmentKind, ty: TypeSpec) -> Self {
        Self {
            kind,
            ty,
            capacity: None,
            payload_len: None,
            init_timeout: DEFAULT_INIT_TIMEOUT,
        }
    }

    /// Also require exactly `capacity` elements ([`SegmentError::WrongLength`]).
    #[must_use]
    pub const fn capacity(mut self, capacity: u64) -> Self {
        self.capacity = Some(capacity);
        self
    }

    /// Also require the payload to be exactly `f(capacity)` bytes, where
    /// `capacity` is the header's (`None` from `f`: overflow, corrupt).
    #[must_use]
    pub const fn payload_len(mut self, f: fn(u64) -> Option<u64>) -> Self {
        self.payload_len = Some(f);
        self
    }

    /// Wait at most `timeout` for a creator still initialising the segment.
    #[must_use]
    pub const fn init_timeout(mut self, timeout: Duration) -> Self {
        self.init_timeout = timeout;
        self
    }

    /// Opens the named segment. See [`Segment::open`].
    ///
    /// # Errors
    /// See [`Segment::open`].
    pub fn open(&self, name: &str) -> Result<Segment, SegmentError> {
        let name = SegmentName::new(name)?;
        let fd = os::shm_open_existing(name.as_c_str())
            .map_err(|e| SegmentError::from_os(name.as_str(), "shm_open", e))?;
        let label = name.as_str().to_owned();
        Segment::attach(File::from(fd), Some(name), label, self)
    }

    /// Opens the anonymous (or named) segment behind `fd`. See [`Segment::open_fd`].
    ///
    /// # Errors
    /// See [`Segment::open`].
    pub fn open_fd(&self, fd: OwnedFd) -> Result<Segment, SegmentError> {
        let label = fd_label(fd.as_fd());
        Segment::attach(File::from(fd), None, label, self)
    }

    /// Opens through `fd` the named segment `name` (a descriptor passed from
    /// another process): known by its name, never its owner.
    pub(crate) fn open_fd_named(
        &self,
        fd: OwnedFd,
        name: SegmentName,
    ) -> Result<Segment, SegmentError> {
        let label = name.as_str().to_owned();
        Segment::attach(File::from(fd), Some(name), label, self)
    }
}

/// Where a creator records its element type's name: the spare bytes right
/// after the header.
pub(crate) const TYPE_NAME_AT: usize = HEADER_LEN as usize;
/// The longest type name recorded (longer ones are cut at a character
/// boundary).
pub(crate) const TYPE_NAME_MAX: usize = DATA_OFFSET - TYPE_NAME_AT - 1;

fn fd_label(fd: BorrowedFd<'_>) -> String {
    use std::os::fd::AsRawFd;
    format!("<anonymous segment, fd {}>", fd.as_raw_fd())
}

/// A mapped shared-memory segment: a 64-byte [`SegmentHeader`], then the
/// payload at [`DATA_OFFSET`].
///
/// # Ownership
/// The creator owns the segment: dropping it unmaps **and unlinks** the name,
/// unless [`persist`](Self::persist) was called. Openers only unmap. Segments
/// are not `Clone`; hand a segment to another process by name or fd and open
/// it there.
///
/// # Fork
/// A forked child inherits the mapping. Ownership stays with the process
/// that created the segment: a `Segment` dropped in a forked child unmaps but
/// never unlinks.
pub struct Segment {
    map: MmapRaw,
    file: File,
    name: Option<SegmentName>,
    label: String,
    /// The pid of the process that unlinks on drop, if any.
    owner: Option<os::Pid>,
    kind: SegmentKind,
    fingerprint: u64,
    capacity: u64,
    len: usize,
}

// SAFETY: `Segment` hands out only raw pointers and references to atomics
// (`ShmSafe` types); the mapping itself is valid from any thread.
unsafe impl Send for Segment {}
// SAFETY: as above; every method takes `&self` and performs no unsynchronised
// access to process-local state.
unsafe impl Sync for Segment {}

impl fmt::Debug for Segment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Segment")
            .field("name", &self.label)
            .field("kind", &self.kind)
            .field("len", &self.len)
            .field("capacity", &self.capacity)
            .field("owner", &self.is_owner())
            .finish_non_exhaustive()
    }
}

/// A segment created but not yet published: openers wait (bounded) until
/// [`publish`](Self::publish) is called. Dropping it without publishing marks
/// the segment poisoned (openers get [`SegmentError::Poisoned`] at once) and
/// unlinks it.
#[derive(Debug)]
pub struct PendingSegment {
    seg: Option<Segment>,
}

impl PendingSegment {
    /// The segment, to initialise its payload through.
    pub fn segment(&self) -> &Segment {
        self.seg.as_ref().expect("present until publish or drop")
    }

    /// Marks the segment ready (`Release`) and wakes the openers waiting on it.
    pub fn publish(mut self) -> Segment {
        let seg = self.seg.take().expect("present until publish or drop");
        let hdr = seg.header();
        // Release: pairs with the openers' Acquire load of `state`, publishing
        // the header fields and everything the creator wrote to the payload.
        hdr.state.store(STATE_READY, Ordering::Release);
        os::futex_wake(&hdr.state, u32::MAX);
        seg
    }
}

impl Drop for PendingSegment {
    fn drop(&mut self) {
        if let Some(seg) = self.seg.take() {
            seg.poison();
        }
    }
}

impl Segment {
    /// Creates the named segment `name` (with or without its leading `/`),
    /// exclusive, mode `0600`, with `layout.payload_len` payload bytes
    /// reserved in `/dev/shm` now. Initialise the payload through
    /// [`PendingSegment::segment`], then [`publish`](PendingSegment::publish).
    ///
    /// # Errors
    /// [`InvalidName`](SegmentError::InvalidName), [`ZeroSize`](SegmentError::ZeroSize),
    /// [`TooLarge`](SegmentError::TooLarge), [`NoSpace`](SegmentError::NoSpace),
    /// [`AlreadyExists`](SegmentError::AlreadyExists),
    /// [`PermissionDenied`](SegmentError::PermissionDenied), or [`Io`](SegmentError::Io).
    pub fn create(name: &str, layout: &SegmentLayout) -> Result<PendingSegment, SegmentError> {
        let name = SegmentName::new(name)?;
        let label = name.as_str().to_owned();
        let total = total_len(&label, layout)?;
        // Before the name exists, so that whatever cleans up after a crash is
        // in place by the time there is something to clean.
        let session = current_session();
        let fd = os::shm_create_exclusive(name.as_c_str())
            .map_err(|e| SegmentError::from_os(&label, "shm_open", e))?;
        let result = Self::init_new(
            File::from(fd),
            Some(name.clone()),
            label,
            total,
            layout,
            session,
        );
        if result.is_err() {
            // Nothing else can have opened it usefully (state never became ready).
            let _ = os::shm_unlink(name.as_c_str());
        }
        result
    }

    /// Creates an anonymous segment (`memfd`), sealed against resizing. It has
    /// no name: hand it to a child by inheritance or as an fd
    /// ([`inheritable_fd`](Self::inheritable_fd)), and open it there with
    /// [`open_fd`](Self::open_fd).
    ///
    /// # Errors
    /// As [`create`](Self::create), without the name errors.
    pub fn create_anonymous(layout: &SegmentLayout) -> Result<PendingSegment, SegmentError> {
        const DEBUG_NAME: &CStr = c"shmproc-anon";
        let fd = os::memfd_create(DEBUG_NAME)
            .map_err(|e| SegmentError::from_os("<anonymous segment>", "memfd_create", e))?;
        let label = fd_label(fd.as_fd());
        let total = total_len(&label, layout)?;
        Self::init_new(File::from(fd), None, label, total, layout, 0)
    }

    fn init_new(
        file: File,
        name: Option<SegmentName>,
        label: String,
        total: u64,
        layout: &SegmentLayout,
        session: u64,
    ) -> Result<PendingSegment, SegmentError> {
        file.set_len(total).map_err(|e| match e.raw_os_error() {
            Some(libc::EFBIG | libc::EINVAL) => SegmentError::TooLarge {
                name: label.clone(),
                requested: total,
                max: MAX_SEGMENT_LEN,
            },
            _ => SegmentError::from_os(&label, "ftruncate", e),
        })?;
        os::fallocate(file.as_fd(), total).map_err(|e| match e.raw_os_error() {
            Some(libc::ENOSPC | libc::ENOMEM) => {
                let space = os::fs_space(c"/dev/shm").unwrap_or(os::FsSpace {
                    total: 0,
                    available: 0,
                });
                SegmentError::NoSpace {
                    name: label.clone(),
                    requested: total,
                    available: space.available,
                    total: space.total,
                    source: e,
                }
            }
            Some(libc::EFBIG) => SegmentError::TooLarge {
                name: label.clone(),
                requested: total,
                max: MAX_SEGMENT_LEN,
            },
            _ => SegmentError::from_os(&label, "posix_fallocate", e),
        })?;
        if name.is_none() {
            os::seal_size(file.as_fd())
                .map_err(|e| SegmentError::from_os(&label, "F_ADD_SEALS", e))?;
        }
        let len = usize::try_from(total).map_err(|_| SegmentError::TooLarge {
            name: label.clone(),
            requested: total,
            max: MAX_SEGMENT_LEN,
        })?;
        let map = MmapOptions::new()
            .len(len)
            .map_raw(&file)
            .map_err(|e| SegmentError::from_os(&label, "mmap", e))?;
        let seg = Segment {
            map,
            file,
            name,
            label,
            owner: Some(os::identity::pid()),
            kind: layout.kind,
            fingerprint: layout.ty.fingerprint(),
            capacity: layout.ty.capacity,
            len,
        };
        seg.header().init(total, layout.kind, &layout.ty, session);
        seg.record_type_name(&layout.ty.stable_name());
        Ok(PendingSegment { seg: Some(seg) })
    }

    /// Opens the named segment `name`, expecting `kind` and element type `ty`
    /// (any capacity), waiting up to [`DEFAULT_INIT_TIMEOUT`] for a creator
    /// that is still initialising it. Use [`OpenOptions`] for more checks.
    ///
    /// The header is validated against the real size of the segment: magic,
    /// layout version, header length, segment length, kind and fingerprint.
    ///
    /// # Errors
    /// [`InvalidName`](SegmentError::InvalidName), [`NotFound`](SegmentError::NotFound),
    /// [`PermissionDenied`](SegmentError::PermissionDenied),
    /// [`WrongKind`](SegmentError::WrongKind), [`WrongType`](SegmentError::WrongType),
    /// [`WrongLength`](SegmentError::WrongLength), [`Truncated`](SegmentError::Truncated),
    /// [`Corrupt`](SegmentError::Corrupt), [`VersionMismatch`](SegmentError::VersionMismatch),
    /// [`InitTimeout`](SegmentError::InitTimeout), [`Poisoned`](SegmentError::Poisoned)
    /// or [`Io`](SegmentError::Io).
    pub fn open(name: &str, kind: SegmentKind, ty: TypeSpec) -> Result<Segment, SegmentError> {
        OpenOptions::new(kind, ty).open(name)
    }

    /// Opens the segment behind `fd` (from [`inheritable_fd`](Self::inheritable_fd)
    /// in a parent, say), with the checks of [`open`](Self::open).
    ///
    /// # Errors
    /// As [`open`](Self::open).
    pub fn open_fd(fd: OwnedFd, kind: SegmentKind, ty: TypeSpec) -> Result<Segment, SegmentError> {
        OpenOptions::new(kind, ty).open_fd(fd)
    }

    fn attach(
        file: File,
        name: Option<SegmentName>,
        label: String,
        opts: &OpenOptions,
    ) -> Result<Segment, SegmentError> {
        let start = Instant::now();
        let deadline = start.checked_add(opts.init_timeout);
        let expired = || deadline.is_none_or(|d| Instant::now() >= d);
        let remaining = || deadline.map(|d| d.saturating_duration_since(Instant::now()));

        // 1. A size of 0 means the creator is between shm_open and ftruncate.
        let mut backoff = Duration::from_micros(50);
        let size = loop {
            let size = file
                .metadata()
                .map_err(|e| SegmentError::from_os(&label, "fstat", e))?
                .len();
            if size != 0 {
                break size;
            }
            if expired() {
                return Err(SegmentError::InitTimeout {
                    name: label,
                    waited: start.elapsed(),
                    state: STATE_UNINIT,
                });
            }
            // Nothing to block on before the header exists: poll the size, bounded.
            #[allow(clippy::disallowed_methods)]
            std::thread::sleep(backoff.min(remaining().unwrap_or(backoff)));
            backoff = (backoff * 2).min(Duration::from_millis(5));
        };
        if size < DATA_OFFSET as u64 {
            return Err(SegmentError::Truncated {
                name: label,
                len: size,
                needed: DATA_OFFSET as u64,
            });
        }
        let len = usize::try_from(size).map_err(|_| SegmentError::TooLarge {
            name: label.clone(),
            requested: size,
            max: MAX_SEGMENT_LEN,
        })?;
        let map = MmapOptions::new()
            .len(len)
            .map_raw(&file)
            .map_err(|e| SegmentError::from_os(&label, "mmap", e))?;
        let mut seg = Segment {
            map,
            file,
            name,
            label,
            owner: None,
            kind: SegmentKind(0),
            fingerprint: 0,
            capacity: 0,
            len,
        };

        // 2. Wait until the creator publishes.
        let hdr = seg.header();
        loop {
            // Acquire: pairs with the creator's Release store of STATE_READY.
            let state = hdr.state.load(Ordering::Acquire);
            match state {
                STATE_READY => break,
                STATE_POISONED => return Err(seg.poisoned("gave up")),
                STATE_UNINIT | STATE_INITIALIZING => {
                    if state == STATE_INITIALIZING {
                        let pid = hdr.creator_pid.load(Ordering::Relaxed);
                        if !crate::OwnerRecord::pid_only(pid).is_alive() {
                            return Err(seg.poisoned("died"));
                        }
                    }
                    if expired() {
                        return Err(SegmentError::InitTimeout {
                            name: seg.label.clone(),
                            waited: start.elapsed(),
                            state,
                        });
                    }
                    // Bounded slices, so a creator that dies is noticed.
                    let slice = remaining()
                        .unwrap_or(Duration::ZERO)
                        .min(Duration::from_millis(10));
                    os::futex_wait(&hdr.state, state, Some(slice));
                }
                other => {
                    let magic = hdr.magic.load(Ordering::Relaxed);
                    let (field, found, expected) = if magic != MAGIC {
                        ("magic", magic, MAGIC)
                    } else {
                        ("state", u64::from(other), u64::from(STATE_READY))
                    };
                    return Err(SegmentError::Corrupt {
                        name: seg.label.clone(),
                        field,
                        found,
                        expected,
                    });
                }
            }
        }

        // 3. Validate everything against the real size and the expectations.
        let f = hdr.snapshot();
        validate(&seg.label, &f, size, opts).map_err(|e| match e {
            SegmentError::WrongType {
                name,
                found_type: None,
                found,
                expected,
                expected_fingerprint,
            } => SegmentError::WrongType {
                name,
                found_type: seg.recorded_type_name(),
                found,
                expected,
                expected_fingerprint,
            },
            other => other,
        })?;
        seg.kind = f.kind;
        seg.fingerprint = f.fingerprint;
        seg.capacity = f.capacity;
        Ok(seg)
    }

    fn poisoned(&self, what: &'static str) -> SegmentError {
        SegmentError::Poisoned {
            name: self.label.clone(),
            creator_pid: self.header().creator_pid.load(Ordering::Relaxed),
            what,
        }
    }

    /// The header. All its fields are atomics: reading them is always sound,
    /// but only the values validated at open are trusted (and cached here).
    #[allow(clippy::cast_ptr_alignment)] // mmap returns page-aligned memory
    pub fn header(&self) -> &SegmentHeader {
        let ptr = self.map.as_ptr().cast::<SegmentHeader>();
        // SAFETY: the mapping is at least DATA_OFFSET >= 64 bytes long (checked
        // at create and open), page-aligned (so 64-aligned), lives as long as
        // `self`, and SegmentHeader consists of atomics only, valid for any bits
        // and for concurrent access from other processes.
        unsafe { &*ptr }
    }

    /// The name, for a named segment.
    pub fn name(&self) -> Option<&SegmentName> {
        self.name.as_ref()
    }

    /// The name or a description of the anonymous segment, as error messages
    /// show it.
    pub fn label(&self) -> &str {
        &self.label
    }

    /// Total length in bytes, header included.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Always `false`: a segment has at least a header and one payload byte.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// Payload length in bytes (from [`DATA_OFFSET`] to the end).
    pub fn data_len(&self) -> usize {
        self.len - DATA_OFFSET
    }

    /// The kind validated at open (or given at create).
    pub fn kind(&self) -> SegmentKind {
        self.kind
    }

    /// The element count validated at open (or given at create).
    pub fn capacity(&self) -> u64 {
        self.capacity
    }

    /// The type fingerprint validated at open (or given at create).
    pub fn fingerprint(&self) -> u64 {
        self.fingerprint
    }

    /// The creator's pid as the header says (informational: any process
    /// mapping the segment can overwrite it).
    pub fn creator_pid(&self) -> u32 {
        self.header().creator_pid.load(Ordering::Relaxed)
    }

    /// The base of the mapping. Memory another process may write at any time:
    /// never make a `&`/`&mut` to non-atomic data through it.
    pub fn as_ptr(&self) -> *mut u8 {
        self.map.as_mut_ptr()
    }

    /// The first payload byte ([`DATA_OFFSET`] past the base).
    pub fn data_ptr(&self) -> *mut u8 {
        self.as_ptr().wrapping_add(DATA_OFFSET)
    }

    /// Resolves `off` to a pointer, checking that `size_of::<T>()` bytes at it
    /// lie inside the payload and that it is aligned for `T`.
    ///
    /// # Errors
    /// [`OffsetError::OutOfBounds`] or [`OffsetError::Misaligned`].
    pub fn resolve<T>(&self, off: Offset<T>) -> Result<NonNull<T>, OffsetError> {
        self.resolve_slice(off, 1).map(|p| p.cast::<T>())
    }

    /// Resolves `off` to a pointer to `n` consecutive `T`s, with the checks of
    /// [`resolve`](Self::resolve) for the whole range.
    ///
    /// # Errors
    /// [`OffsetError::OutOfBounds`] or [`OffsetError::Misaligned`].
    pub fn resolve_slice<T>(&self, off: Offset<T>, n: usize) -> Result<NonNull<[T]>, OffsetError> {
        let offset = off.get();
        let bytes = (std::mem::size_of::<T>() as u64).checked_mul(n as u64);
        let oob = OffsetError::OutOfBounds {
            offset,
            len: bytes.unwrap_or(u64::MAX),
            start: DATA_OFFSET as u64,
            end: self.len as u64,
        };
        let end = bytes.and_then(|b| offset.checked_add(b)).ok_or(oob)?;
        if offset < DATA_OFFSET as u64 || end > self.len as u64 {
            return Err(oob);
        }
        let align = std::mem::align_of::<T>() as u64;
        // The base is page-aligned, so alignment of the offset is alignment of the address.
        if offset % align != 0 {
            return Err(OffsetError::Misaligned { offset, align });
        }
        // `offset < len <= isize::MAX`, checked above.
        let ptr = self.as_ptr().wrapping_add(offset as usize).cast::<T>();
        let ptr = std::ptr::slice_from_raw_parts_mut(ptr, n);
        Ok(NonNull::new(ptr).expect("an address inside a mapping is not null"))
    }

    /// A shared reference to a [`ShmSafe`] value (atomics only) at `off`.
    ///
    /// # Errors
    /// As [`resolve`](Self::resolve).
    pub fn get<T: ShmSafe>(&self, off: Offset<T>) -> Result<&T, OffsetError> {
        let ptr = self.resolve(off)?;
        // SAFETY: `resolve` checked bounds and alignment inside the mapping, which
        // lives as long as `&self`; `T: ShmSafe` is valid for every bit pattern and
        // mutated only through atomics, so shared access across processes is sound.
        Ok(unsafe { ptr.as_ref() })
    }

    /// Keeps the name after this handle is dropped (the creator no longer
    /// unlinks it). Someone must [`remove`](Self::remove) it later. The
    /// header records it ([`FLAG_PERSISTENT`]), so crash cleanup leaves it
    /// alone too, even when its creator dies.
    pub fn persist(&mut self) {
        self.owner = None;
        // Release: a cleaner that reads the flag with Acquire sees the whole
        // segment as this process left it.
        self.header()
            .flags
            .fetch_or(FLAG_PERSISTENT, Ordering::Release);
    }

    /// Makes this handle the owner: it unlinks the name on drop (in this
    /// process; see [Fork](Self#fork)), and crash cleanup may remove it
    /// again ([`FLAG_PERSISTENT`] cleared).
    pub fn take_ownership(&mut self) {
        self.owner = Some(os::identity::pid());
        self.header()
            .flags
            .fetch_and(!FLAG_PERSISTENT, Ordering::Release);
    }

    /// Whether the segment was [persisted](Self::persist) (by any process).
    pub fn is_persistent(&self) -> bool {
        self.header().flags.load(Ordering::Acquire) & FLAG_PERSISTENT != 0
    }

    /// The crash-cleanup session its creator tagged it with, or 0.
    pub fn session(&self) -> u64 {
        self.header().session.load(Ordering::Relaxed)
    }

    /// Reads the header of the named segment `name` from its file, without
    /// mapping it, for crash cleanup and listing tools.
    ///
    /// # Errors
    /// [`InvalidName`](SegmentError::InvalidName), [`NotFound`](SegmentError::NotFound),
    /// [`PermissionDenied`](SegmentError::PermissionDenied) or [`Io`](SegmentError::Io)
    /// when it cannot be read; [`Truncated`](SegmentError::Truncated) when it is
    /// shorter than a header (a creator between `shm_open` and `ftruncate`);
    /// [`Corrupt`](SegmentError::Corrupt) when the magic is not shmproc's;
    /// [`VersionMismatch`](SegmentError::VersionMismatch) for another layout version.
    pub fn peek(name: &str) -> Result<PeekedHeader, SegmentError> {
        use std::io::Read;
        use std::mem::offset_of;
        let name = SegmentName::new(name)?;
        let label = name.as_str().to_owned();
        // Read-only: looking must never need (or imply) the right to write.
        // Non-blocking and no symlinks: whatever else sits in /dev/shm (a
        // FIFO, a link) must neither block nor redirect the read.
        let mut file = {
            use std::os::unix::fs::OpenOptionsExt;
            std::fs::OpenOptions::new()
                .read(true)
                .custom_flags(libc::O_NONBLOCK | libc::O_NOFOLLOW)
                .open(std::path::Path::new("/dev/shm").join(name.bare()))
                .map_err(|e| SegmentError::from_os(&label, "open", e))?
        };
        let is_file = file
            .metadata()
            .map_err(|e| SegmentError::from_os(&label, "fstat", e))?
            .is_file();
        if !is_file {
            return Err(SegmentError::Corrupt {
                name: label,
                field: "file type",
                found: 0,
                expected: 0,
            });
        }
        let mut head = [0u8; HEADER_LEN as usize];
        let mut got = 0;
        while got < head.len() {
            match file.read(head.get_mut(got..).unwrap_or_default()) {
                Ok(0) => {
                    return Err(SegmentError::Truncated {
                        name: label,
                        len: got as u64,
                        needed: u64::from(HEADER_LEN),
                    });
                }
                Ok(n) => got += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(SegmentError::from_os(&label, "read", e)),
            }
        }
        let u32_at = |off: usize| {
            let mut b = [0u8; 4];
            b.copy_from_slice(head.get(off..off + 4).unwrap_or(&[0; 4]));
            u32::from_ne_bytes(b)
        };
        let u64_at = |off: usize| {
            let mut b = [0u8; 8];
            b.copy_from_slice(head.get(off..off + 8).unwrap_or(&[0; 8]));
            u64::from_ne_bytes(b)
        };
        let magic = u64_at(offset_of!(SegmentHeader, magic));
        if magic != MAGIC {
            return Err(SegmentError::Corrupt {
                name: label,
                field: "magic",
                found: magic,
                expected: MAGIC,
            });
        }
        let version = u32_at(offset_of!(SegmentHeader, layout_version));
        if version != LAYOUT_VERSION {
            return Err(SegmentError::VersionMismatch {
                name: label,
                found: version,
                expected: LAYOUT_VERSION,
            });
        }
        Ok(PeekedHeader {
            state: u32_at(offset_of!(SegmentHeader, state)),
            kind: SegmentKind(u32_at(offset_of!(SegmentHeader, kind))),
            creator_pid: u32_at(offset_of!(SegmentHeader, creator_pid)),
            persistent: u32_at(offset_of!(SegmentHeader, flags)) & FLAG_PERSISTENT != 0,
            session: u64_at(offset_of!(SegmentHeader, session)),
        })
    }

    /// Whether dropping this handle (in this process) unlinks the name.
    pub fn is_owner(&self) -> bool {
        self.owner == Some(os::identity::pid())
    }

    /// Unlinks the name now (a no-op for anonymous segments). The mapping stays
    /// valid, here and in every process that has it open.
    ///
    /// # Errors
    /// [`NotFound`](SegmentError::NotFound) when the name is already gone.
    pub fn unlink(&mut self) -> Result<(), SegmentError> {
        self.owner = None;
        match &self.name {
            Some(n) => Segment::remove(n.as_str()),
            None => Ok(()),
        }
    }

    /// Unlinks the named segment `name` (Python's `SharedMemory.unlink`).
    ///
    /// # Errors
    /// [`InvalidName`](SegmentError::InvalidName), [`NotFound`](SegmentError::NotFound),
    /// [`PermissionDenied`](SegmentError::PermissionDenied) or [`Io`](SegmentError::Io).
    pub fn remove(name: &str) -> Result<(), SegmentError> {
        let name = SegmentName::new(name)?;
        os::shm_unlink(name.as_c_str())
            .map_err(|e| SegmentError::from_os(name.as_str(), "shm_unlink", e))
    }

    /// Whether a named segment exists (it may still be initialising).
    pub fn exists(name: &str) -> bool {
        SegmentName::new(name)
            .ok()
            .is_some_and(|n| std::path::Path::new("/dev/shm").join(n.bare()).exists())
    }

    /// Marks the segment poisoned: openers waiting on it, and later ones, get
    /// [`SegmentError::Poisoned`].
    pub fn poison(&self) {
        let hdr = self.header();
        // Release: pairs with the openers' Acquire load of `state`.
        hdr.state.store(STATE_POISONED, Ordering::Release);
        os::futex_wake(&hdr.state, u32::MAX);
    }

    /// Records the element type's name in the spare bytes between the
    /// header and the payload (a length byte, then up to
    /// [`TYPE_NAME_MAX`] bytes of UTF-8), for an opener's error message.
    /// Called by the creator before publishing.
    fn record_type_name(&self, name: &str) {
        let mut n = name.len().min(TYPE_NAME_MAX);
        while !name.is_char_boundary(n) {
            n -= 1;
        }
        let mut buf = [0u8; TYPE_NAME_MAX + 1];
        if let (Some(dst), Some(src)) = (buf.get_mut(1..=n), name.as_bytes().get(..n)) {
            dst.copy_from_slice(src);
            buf[0] = n as u8;
        }
        // SAFETY: the mapping is at least DATA_OFFSET = TYPE_NAME_AT + 64
        // bytes long (checked at create), so the offset stays inside it.
        let at = unsafe { self.as_ptr().add(TYPE_NAME_AT) };
        // SAFETY: `at..at + 64` lies inside the mapping (above); the segment
        // is not published yet, so no opener reads these bytes now.
        unsafe { std::ptr::copy_nonoverlapping(buf.as_ptr(), at, buf.len()) };
    }

    /// The element type's name its creator recorded, if it reads as one
    /// (another process wrote these bytes: checked, never trusted).
    fn recorded_type_name(&self) -> Option<String> {
        // SAFETY: the mapping is at least DATA_OFFSET bytes long (checked at
        // open before any header field is read), so the offset is inside it.
        let at = unsafe { self.as_ptr().add(TYPE_NAME_AT) };
        // SAFETY: `at..at + 64` lies inside the mapping; `[u8; 64]` has
        // alignment 1 and is valid for any bits; volatile because another
        // process may write it at any time.
        let buf = unsafe { at.cast::<[u8; TYPE_NAME_MAX + 1]>().read_volatile() };
        let (&len, rest) = buf.split_first()?;
        let name = std::str::from_utf8(rest.get(..usize::from(len))?).ok()?;
        (!name.is_empty()).then(|| name.to_owned())
    }

    /// The segment's file descriptor (close-on-exec).
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.file.as_fd()
    }

    /// A duplicate of the descriptor **without** close-on-exec, so a child
    /// started with `exec` inherits it under the same number. Pass the number
    /// ([`AsRawFd::as_raw_fd`](std::os::fd::AsRawFd::as_raw_fd)) to the child,
    /// which adopts it and calls [`open_fd`](Self::open_fd). Drop the duplicate
    /// in the parent once the child has started.
    ///
    /// # Errors
    /// [`Io`](SegmentError::Io) when the descriptor cannot be duplicated.
    pub fn inheritable_fd(&self) -> Result<OwnedFd, SegmentError> {
        os::dup_inheritable(self.fd()).map_err(|e| SegmentError::from_os(&self.label, "dup", e))
    }
}

impl Drop for Segment {
    fn drop(&mut self) {
        if self.is_owner() {
            if let Some(name) = &self.name {
                match os::shm_unlink(name.as_c_str()) {
                    Ok(()) => {}
                    Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {}
                    Err(e) => eprintln!("shmproc: could not unlink segment {name}: {e}"),
                }
            }
        }
        // The mapping is unmapped by MmapRaw's own Drop, the fd closed by File's.
    }
}

fn total_len(label: &str, layout: &SegmentLayout) -> Result<u64, SegmentError> {
    if layout.payload_len == 0 {
        return Err(SegmentError::ZeroSize {
            name: label.to_owned(),
        });
    }
    layout
        .payload_len
        .checked_add(DATA_OFFSET as u64)
        .filter(|&t| t <= MAX_SEGMENT_LEN)
        .ok_or_else(|| SegmentError::TooLarge {
            name: label.to_owned(),
            requested: layout.payload_len,
            max: MAX_SEGMENT_LEN - DATA_OFFSET as u64,
        })
}

/// Checks a published header against the real size and the opener's
/// expectations. Pure: also used by the fuzz target and the unit tests.
pub(crate) fn validate(
    label: &str,
    f: &HeaderFields,
    real_len: u64,
    opts: &OpenOptions,
) -> Result<(), SegmentError> {
    let name = || label.to_owned();
    if f.magic != MAGIC {
        return Err(SegmentError::Corrupt {
            name: name(),
            field: "magic",
            found: f.magic,
            expected: MAGIC,
        });
    }
    if f.layout_version != LAYOUT_VERSION {
        return Err(SegmentError::VersionMismatch {
            name: name(),
            found: f.layout_version,
            expected: LAYOUT_VERSION,
        });
    }
    if f.header_len != HEADER_LEN {
        return Err(SegmentError::Corrupt {
            name: name(),
            field: "header_len",
            found: u64::from(f.header_len),
            expected: u64::from(HEADER_LEN),
        });
    }
    if f.segment_len > real_len {
        return Err(SegmentError::Truncated {
            name: name(),
            len: real_len,
            needed: f.segment_len,
        });
    }
    if f.segment_len != real_len {
        return Err(SegmentError::Corrupt {
            name: name(),
            field: "segment_len",
            found: f.segment_len,
            expected: real_len,
        });
    }
    if f.kind != opts.kind {
        return Err(SegmentError::WrongKind {
            name: name(),
            found: f.kind,
            expected: opts.kind,
        });
    }
    let expected = opts.ty.with_capacity(f.capacity);
    if f.fingerprint != expected.fingerprint() {
        return Err(SegmentError::WrongType {
            name: name(),
            found_type: None,
            found: f.fingerprint,
            expected,
            expected_fingerprint: expected.fingerprint(),
        });
    }
    if let Some(cap) = opts.capacity {
        if cap != f.capacity {
            return Err(SegmentError::WrongLength {
                name: name(),
                found: f.capacity,
                expected: cap,
            });
        }
    }
    if let Some(payload_len) = opts.payload_len {
        let want = payload_len(f.capacity).and_then(|p| p.checked_add(DATA_OFFSET as u64));
        if want != Some(real_len) {
            return Err(SegmentError::Corrupt {
                name: name(),
                field: "segment_len",
                found: real_len,
                expected: want.unwrap_or(u64::MAX),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn good(len: u64) -> HeaderFields {
        HeaderFields {
            magic: MAGIC,
            layout_version: LAYOUT_VERSION,
            header_len: HEADER_LEN,
            segment_len: len,
            fingerprint: TypeSpec::of::<u32>().with_capacity(4).fingerprint(),
            kind: SegmentKind::TEST,
            state: STATE_READY,
            creator_pid: 1,
            capacity: 4,
        }
    }

    fn opts() -> OpenOptions {
        OpenOptions::new(SegmentKind::TEST, TypeSpec::of::<u32>())
    }

    #[test]
    fn validate_accepts_a_good_header() {
        validate("/t", &good(144), 144, &opts()).unwrap();
        validate("/t", &good(144), 144, &opts().capacity(4)).unwrap();
        validate(
            "/t",
            &good(144),
            144,
            &opts().payload_len(|c| c.checked_mul(4)),
        )
        .unwrap();
    }

    #[test]
    fn validate_names_each_bad_field() {
        let mut f = good(144);
        f.magic ^= 1;
        assert!(matches!(
            validate("/t", &f, 144, &opts()),
            Err(SegmentError::Corrupt { field: "magic", .. })
        ));
        let mut f = good(144);
        f.layout_version = 99;
        assert!(matches!(
            validate("/t", &f, 144, &opts()),
            Err(SegmentError::VersionMismatch { found: 99, .. })
        ));
        assert!(matches!(
            validate("/t", &good(200), 144, &opts()),
            Err(SegmentError::Truncated {
                len: 144,
                needed: 200,
                ..
            })
        ));
        assert!(matches!(
            validate("/t", &good(144), 4096, &opts()),
            Err(SegmentError::Corrupt {
                field: "segment_len",
                ..
            })
        ));
        assert!(matches!(
            validate(
                "/t",
                &good(144),
                144,
                &OpenOptions::new(SegmentKind::QUEUE, TypeSpec::of::<u32>())
            ),
            Err(SegmentError::WrongKind { .. })
        ));
        assert!(matches!(
            validate(
                "/t",
                &good(144),
                144,
                &OpenOptions::new(SegmentKind::TEST, TypeSpec::of::<f32>())
            ),
            Err(SegmentError::WrongType { .. })
        ));
        assert!(matches!(
            validate("/t", &good(144), 144, &opts().capacity(5)),
            Err(SegmentError::WrongLength {
                found: 4,
                expected: 5,
                ..
            })
        ));
        assert!(matches!(
            validate(
                "/t",
                &good(144),
                144,
                &opts().payload_len(|c| c.checked_mul(8))
            ),
            Err(SegmentError::Corrupt {
                field: "segment_len",
                ..
            })
        ));
    }
}
