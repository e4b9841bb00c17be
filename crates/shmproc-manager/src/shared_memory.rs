//! [`SharedMemory`]: Python's `multiprocessing.shared_memory.SharedMemory`,
//! a block of raw bytes in a named (or anonymous) segment.

use std::fmt;

use shmproc_shm::{IndexError, SegmentError, SharedObject, ShmSlice, Source};

/// A block of raw bytes in shared memory (Python's
/// `shared_memory.SharedMemory`), built on [`ShmSlice<u8>`]: any process of
/// the same user opens it by name.
///
/// Other processes may write the bytes at any time, so the safe accessors
/// copy ([`read`](Self::read), [`write`](Self::write),
/// [`to_vec`](Self::to_vec)); in-place `&[u8]` / `&mut [u8]` views are the
/// `unsafe` [`ShmSlice::as_slice`] / [`ShmSlice::as_mut_slice`] of
/// [`buf`](Self::buf), whose contract (no concurrent writer) the caller
/// states, typically by holding a `shmproc::Lock` every writer takes.
///
/// The creator unlinks the name when it is closed or dropped (Python needs
/// an explicit `unlink()`), unless [`persist`](Self::persist) opted out, for
/// a segment meant to outlive the program.
///
/// # Examples
/// ```
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use shmproc_manager::SharedMemory;
/// let name = shmproc_shm::SegmentName::unique("doc-shm");
/// let shm = SharedMemory::create(name.as_str(), 16)?;
/// let other = SharedMemory::open(name.as_str())?; // another process, typically
/// other.write(0, b"hello")?;
/// let mut buf = [0u8; 5];
/// shm.read(0, &mut buf)?;
/// assert_eq!(&buf, b"hello");
/// assert_eq!(shm.size(), 16);
/// # Ok(()) }
/// ```
#[doc(alias = "shared_memory.SharedMemory")]
pub struct SharedMemory {
    buf: ShmSlice<u8>,
}

impl SharedMemory {
    /// Creates the named segment `name` of `size` zero bytes
    /// (`SharedMemory(name, create=True, size=size)`).
    ///
    /// # Errors
    /// As [`shmproc_shm::Segment::create`]: an invalid or taken name, size 0,
    /// no space; the OS error is the source.
    pub fn create(name: &str, size: usize) -> Result<Self, SegmentError> {
        Ok(Self {
            buf: ShmSlice::create(name, size, 0u8)?,
        })
    }

    /// Creates an anonymous segment of `size` zero bytes (a `memfd`), shared
    /// by passing it to a child.
    ///
    /// # Errors
    /// As [`create`](Self::create).
    pub fn new(size: usize) -> Result<Self, SegmentError> {
        Ok(Self {
            buf: ShmSlice::new(size, 0u8)?,
        })
    }

    /// Opens the existing segment `name` (`SharedMemory(name)`), as an opener
    /// that never unlinks.
    ///
    /// # Errors
    /// As [`shmproc_shm::Segment::open`]: missing, of another kind, corrupt.
    pub fn open(name: &str) -> Result<Self, SegmentError> {
        Ok(Self {
            buf: ShmSlice::open(name)?,
        })
    }

    /// The segment's name without the leading `/`, as Python gives it
    /// (`None` for an anonymous block); [`open`](Self::open) takes either form.
    pub fn name(&self) -> Option<&str> {
        self.buf
            .segment()
            .name()
            .map(shmproc_shm::SegmentName::bare)
    }

    /// Size of the block in bytes (exactly what was asked for; Python rounds
    /// up to a page).
    pub fn size(&self) -> usize {
        self.buf.len()
    }

    /// Copies `out.len()` bytes starting at `offset` into `out`.
    ///
    /// # Errors
    /// [`IndexError`] when the range leaves the block.
    pub fn read(&self, offset: usize, out: &mut [u8]) -> Result<(), IndexError> {
        self.buf.read_into(offset, out)
    }

    /// Copies `bytes` into the block at `offset`.
    ///
    /// # Errors
    /// [`IndexError`] when the range leaves the block.
    pub fn write(&self, offset: usize, bytes: &[u8]) -> Result<(), IndexError> {
        self.buf.write_from(offset, bytes)
    }

    /// A copy of the whole block (`bytes(shm.buf)`).
    pub fn to_vec(&self) -> Vec<u8> {
        self.buf.to_vec()
    }

    /// The bytes as a [`ShmSlice<u8>`]: per-byte `get`/`set`, and the
    /// `unsafe` in-place views `as_slice` / `as_mut_slice` (`shm.buf`).
    pub fn buf(&self) -> &ShmSlice<u8> {
        &self.buf
    }

    /// Keeps the segment after this handle (and the program) ends: the
    /// opt-out of automatic cleanup. Remove it later with
    /// [`SharedMemory::unlink`] from any handle, or `shmproc clean`.
    pub fn persist(&mut self) {
        self.buf.segment_mut().persist();
    }

    /// Removes the name now (`SharedMemory.unlink()`): the memory lives on
    /// while any process maps it, but nobody can open it any more. Any
    /// handle may unlink, as in Python.
    ///
    /// # Errors
    /// The OS error of `shm_unlink` (`NotFound` when it is gone already).
    pub fn unlink(&mut self) -> Result<(), SegmentError> {
        self.buf.segment_mut().unlink()
    }

    /// Unmaps the block (`SharedMemory.close()`). The creator's handle also
    /// unlinks the name, unless [`persist`](Self::persist) was called.
    pub fn close(self) {
        drop(self);
    }
}

impl fmt::Debug for SharedMemory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SharedMemory")
            .field("name", &self.name())
            .field("size", &self.size())
            .finish()
    }
}

impl SharedObject for SharedMemory {
    const WHAT: &'static str = "SharedMemory";
    type Error = SegmentError;

    fn segment(&self) -> &shmproc_shm::Segment {
        self.buf.segment()
    }

    fn open_source(source: Source<'_>) -> Result<Self, SegmentError> {
        Ok(Self {
            buf: ShmSlice::open_source(source)?,
        })
    }
}
