//! The 64-byte header at the start of every segment, the segment kinds, and
//! the type fingerprint.
//!
//! See [`SegmentHeader`] for the layout.

use std::fmt;
use std::mem::{align_of, size_of};

use crate::sync::real::{AtomicU32, AtomicU64, Ordering};

/// `b"SHMPROC\0"` read as a little-endian `u64`.
pub const MAGIC: u64 = u64::from_le_bytes(*b"SHMPROC\0");
/// The version of the header and of every layout defined in this workspace.
/// Bumped whenever any shared layout changes. (`flags` and `session` took
/// over fields that version 1 wrote as 0 and never validated, with 0 still
/// meaning "none": not a change of layout.)
pub const LAYOUT_VERSION: u32 = 1;
/// Size of [`SegmentHeader`].
pub const HEADER_LEN: u32 = 64;
/// Offset of the payload from the segment base: the header's line plus one
/// spare line, so the payload is 128-byte aligned (head/tail lines of rings).
pub const DATA_OFFSET: usize = 128;

/// `state`: the segment exists but its header was not written yet.
pub const STATE_UNINIT: u32 = 0;
/// `state`: the creator is initialising the payload.
pub const STATE_INITIALIZING: u32 = 1;
/// `state`: ready; every other header field and the payload are initialised.
pub const STATE_READY: u32 = 2;
/// `state`: the creator gave up during initialisation; never becomes ready.
pub const STATE_POISONED: u32 = 3;

/// `flags` bit: the segment was [persisted](crate::Segment::persist) on
/// purpose; crash cleanup never removes it.
pub const FLAG_PERSISTENT: u32 = 1;

/// The header at offset 0 of every segment.
///
/// ```text
/// offset  size  field           meaning
///      0     8  magic           b"SHMPROC\0" as a little-endian u64
///      8     4  layout_version  LAYOUT_VERSION
///     12     4  header_len      64
///     16     8  segment_len     total bytes, header included; equals the file size
///     24     8  fingerprint     FNV-1a of the element type, capacity, slot size, ...
///     32     4  kind            what the segment holds (SegmentKind)
///     36     4  state           0 uninit, 1 initialising, 2 ready, 3 poisoned (futex word)
///     40     4  creator_pid     pid of the creating process
///     44     4  flags           FLAG_PERSISTENT (bit 0); other bits 0
///     48     8  capacity        element count of the payload (0 when not applicable)
///     56     8  session         crash-cleanup session of the creator, or 0 (none)
///     64    64  (reserved line) payload starts at DATA_OFFSET = 128
/// ```
///
/// Every field is an atomic, so a `&SegmentHeader` over memory that another
/// (possibly hostile) process writes is sound; fields other than `state` are
/// written once before `state` becomes [`STATE_READY`] with `Release`.
#[repr(C, align(64))]
#[derive(Debug)]
pub struct SegmentHeader {
    /// [`MAGIC`].
    pub magic: AtomicU64,
    /// [`LAYOUT_VERSION`].
    pub layout_version: AtomicU32,
    /// [`HEADER_LEN`].
    pub header_len: AtomicU32,
    /// Total length of the segment in bytes.
    pub segment_len: AtomicU64,
    /// [`TypeSpec::fingerprint`] of the payload.
    pub fingerprint: AtomicU64,
    /// [`SegmentKind`] as a number.
    pub kind: AtomicU32,
    /// The publication state; also a futex word openers wait on.
    pub state: AtomicU32,
    /// Pid of the creator.
    pub creator_pid: AtomicU32,
    /// [`FLAG_PERSISTENT`]; other bits 0. Set and cleared after publication
    /// (with `Release`), so read it with `Acquire`.
    pub flags: AtomicU32,
    /// Element count of the payload, or 0.
    pub capacity: AtomicU64,
    /// The crash-cleanup session the creator belongs to (see
    /// [`set_session_provider`](crate::set_session_provider)), or 0.
    pub session: AtomicU64,
}

crate::shm_safe! {
    SegmentHeader (size HEADER_LEN as usize, align 64) {
        magic @ 0: AtomicU64,
        layout_version @ 8: AtomicU32,
        header_len @ 12: AtomicU32,
        segment_len @ 16: AtomicU64,
        fingerprint @ 24: AtomicU64,
        kind @ 32: AtomicU32,
        state @ 36: AtomicU32,
        creator_pid @ 40: AtomicU32,
        flags @ 44: AtomicU32,
        capacity @ 48: AtomicU64,
        session @ 56: AtomicU64,
    }
}

const _: () = assert!(DATA_OFFSET >= HEADER_LEN as usize && DATA_OFFSET % 128 == 0);

/// A snapshot of the header's fields, read once with `Relaxed` loads after
/// `state` was read with `Acquire`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeaderFields {
    /// See [`SegmentHeader::magic`].
    pub magic: u64,
    /// See [`SegmentHeader::layout_version`].
    pub layout_version: u32,
    /// See [`SegmentHeader::header_len`].
    pub header_len: u32,
    /// See [`SegmentHeader::segment_len`].
    pub segment_len: u64,
    /// See [`SegmentHeader::fingerprint`].
    pub fingerprint: u64,
    /// See [`SegmentHeader::kind`].
    pub kind: SegmentKind,
    /// See [`SegmentHeader::state`].
    pub state: u32,
    /// See [`SegmentHeader::creator_pid`].
    pub creator_pid: u32,
    /// See [`SegmentHeader::capacity`].
    pub capacity: u64,
}

impl SegmentHeader {
    /// Reads every field once. `state` is loaded with `Acquire`, pairing with
    /// the creator's `Release` store of [`STATE_READY`], so when it reads
    /// ready the other fields are the creator's.
    pub fn snapshot(&self) -> HeaderFields {
        // Acquire: pairs with the Release store of STATE_READY in `publish`.
        let state = self.state.load(Ordering::Acquire);
        HeaderFields {
            magic: self.magic.load(Ordering::Relaxed),
            layout_version: self.layout_version.load(Ordering::Relaxed),
            header_len: self.header_len.load(Ordering::Relaxed),
            segment_len: self.segment_len.load(Ordering::Relaxed),
            fingerprint: self.fingerprint.load(Ordering::Relaxed),
            kind: SegmentKind(self.kind.load(Ordering::Relaxed)),
            state,
            creator_pid: self.creator_pid.load(Ordering::Relaxed),
            capacity: self.capacity.load(Ordering::Relaxed),
        }
    }

    /// Writes every field but `state` (left at [`STATE_INITIALIZING`]).
    pub(crate) fn init(&self, segment_len: u64, kind: SegmentKind, ty: &TypeSpec, session: u64) {
        // Relaxed: nothing is published until `state` becomes READY with Release.
        self.state.store(STATE_INITIALIZING, Ordering::Relaxed);
        self.magic.store(MAGIC, Ordering::Relaxed);
        self.layout_version.store(LAYOUT_VERSION, Ordering::Relaxed);
        self.header_len.store(HEADER_LEN, Ordering::Relaxed);
        self.segment_len.store(segment_len, Ordering::Relaxed);
        self.fingerprint.store(ty.fingerprint(), Ordering::Relaxed);
        self.kind.store(kind.0, Ordering::Relaxed);
        self.creator_pid
            .store(crate::os::identity::pid().as_u32(), Ordering::Relaxed);
        self.flags.store(0, Ordering::Relaxed);
        self.capacity.store(ty.capacity, Ordering::Relaxed);
        self.session.store(session, Ordering::Relaxed);
    }
}

/// What a segment holds. Stored as a `u32`; unknown numbers are kept as they
/// are (never turned into an enum), so a segment of a newer kind reads back as
/// "kind 42", not as undefined behaviour.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct SegmentKind(pub u32);

macro_rules! kinds {
    ($($(#[$doc:meta])* $name:ident = $n:expr, $text:expr;)*) => {
        impl SegmentKind {
            $( $(#[$doc])* pub const $name: SegmentKind = SegmentKind($n); )*

            /// The kind's name, or `None` for a number this build does not know.
            pub fn name(self) -> Option<&'static str> {
                match self.0 {
                    $( $n => Some($text), )*
                    _ => None,
                }
            }
        }
    };
}

kinds! {
    /// Raw bytes with no further structure (`SharedMemory`).
    RAW = 1, "raw";
    /// One `Pod` value ([`ShmBox`](crate::ShmBox)).
    BOX = 2, "box";
    /// A slice of `Pod` values ([`ShmSlice`](crate::ShmSlice)).
    SLICE = 3, "slice";
    /// `Lock`.
    LOCK = 16, "Lock";
    /// `RLock`.
    RLOCK = 17, "RLock";
    /// `Semaphore`.
    SEMAPHORE = 18, "Semaphore";
    /// `BoundedSemaphore`.
    BOUNDED_SEMAPHORE = 19, "BoundedSemaphore";
    /// `Event`.
    EVENT = 20, "Event";
    /// `Condition`.
    CONDITION = 21, "Condition";
    /// `Barrier`.
    BARRIER = 22, "Barrier";
    /// `Value` (with a lock).
    VALUE = 32, "Value";
    /// `Array` (with a lock).
    ARRAY = 33, "Array";
    /// `RawValue`.
    RAW_VALUE = 34, "RawValue";
    /// `RawArray`.
    RAW_ARRAY = 35, "RawArray";
    /// `Queue`.
    QUEUE = 48, "Queue";
    /// `JoinableQueue`.
    JOINABLE_QUEUE = 49, "JoinableQueue";
    /// `SimpleQueue`.
    SIMPLE_QUEUE = 50, "SimpleQueue";
    /// `Pipe`.
    PIPE = 51, "Pipe";
    /// A test-only kind.
    TEST = 0xfff0, "test";
}

impl fmt::Display for SegmentKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(n) => f.write_str(n),
            None => write!(f, "kind {}", self.0),
        }
    }
}

impl fmt::Debug for SegmentKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SegmentKind({self})")
    }
}

/// What a segment's payload is made of: the element type and the shape.
/// Its [`fingerprint`](TypeSpec::fingerprint) goes in the header, and an
/// opener that expects another type gets [`SegmentError::WrongType`](crate::SegmentError::WrongType).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct TypeSpec {
    /// `std::any::type_name` of the element type.
    pub type_name: &'static str,
    /// `size_of` the element type.
    pub size: u64,
    /// `align_of` the element type.
    pub align: u64,
    /// Number of elements (0 when not applicable).
    pub capacity: u64,
    /// Bytes per slot for slotted layouts (0 when not applicable).
    pub slot_size: u64,
}

impl TypeSpec {
    /// The spec of `T` with capacity and slot size 0.
    pub fn of<T>() -> Self {
        Self {
            type_name: std::any::type_name::<T>(),
            size: size_of::<T>() as u64,
            align: align_of::<T>() as u64,
            capacity: 0,
            slot_size: 0,
        }
    }

    /// The spec of an untyped byte payload.
    pub const fn bytes() -> Self {
        Self {
            type_name: "bytes",
            size: 1,
            align: 1,
            capacity: 0,
            slot_size: 0,
        }
    }

    /// The type name without module paths (`app::geo::Point` is `Point`):
    /// what the fingerprint hashes, and what a segment records of its
    /// element type for error messages.
    pub fn stable_name(&self) -> String {
        let mut out = String::with_capacity(self.type_name.len());
        let mut rest = self.type_name;
        while let Some(c) = rest.chars().next() {
            if c.is_ascii_alphanumeric() || c == '_' {
                let n = rest
                    .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                    .unwrap_or(rest.len());
                let (ident, after) = rest.split_at(n);
                if let Some(tail) = after.strip_prefix("::") {
                    rest = tail;
                } else {
                    out.push_str(ident);
                    rest = after;
                }
            } else {
                out.push(c);
                rest = rest.split_at(c.len_utf8()).1;
            }
        }
        out
    }

    /// The same spec with `capacity` elements.
    #[must_use]
    pub const fn with_capacity(mut self, capacity: u64) -> Self {
        self.capacity = capacity;
        self
    }

    /// The same spec with slots of `slot_size` bytes.
    #[must_use]
    pub const fn with_slot_size(mut self, slot_size: u64) -> Self {
        self.slot_size = slot_size;
        self
    }

    /// FNV-1a over the type name without its module paths, size,
    /// alignment, capacity, slot size, layout version, pointer width and
    /// endianness.
    ///
    /// Module paths are left out (`my_app::geo::Point` counts as `Point`,
    /// `[a::B; 4]` as `[B; 4]`), so two programs that define the same
    /// `#[repr(C)]` struct in different modules or crates share its
    /// segments; a type of another name, size or alignment is still
    /// refused. Two structs of one name, size and alignment whose fields
    /// differ are not told apart: give them different names.
    pub const fn fingerprint(&self) -> u64 {
        let mut h = Fnv::new().type_name(self.type_name.as_bytes());
        h = h.u64(self.size).u64(self.align).u64(self.capacity);
        h = h.u64(self.slot_size).u64(LAYOUT_VERSION as u64);
        h = h
            .u64(usize::BITS as u64)
            .u64(cfg!(target_endian = "little") as u64);
        h.0
    }
}

impl fmt::Display for TypeSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "`{}` (size {}, align {}",
            self.type_name, self.size, self.align
        )?;
        if self.capacity != 0 {
            write!(f, ", capacity {}", self.capacity)?;
        }
        if self.slot_size != 0 {
            write!(f, ", slot size {}", self.slot_size)?;
        }
        f.write_str(")")
    }
}

impl fmt::Debug for TypeSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "TypeSpec({self}, fingerprint {:#018x})",
            self.fingerprint()
        )
    }
}

/// A const FNV-1a 64-bit hasher.
struct Fnv(u64);

impl Fnv {
    const fn new() -> Self {
        Self(0xcbf2_9ce4_8422_2325)
    }
    const fn bytes(mut self, mut b: &[u8]) -> Self {
        while let [first, rest @ ..] = b {
            self.0 ^= *first as u64;
            self.0 = self.0.wrapping_mul(0x0000_0100_0000_01b3);
            b = rest;
        }
        self
    }
    const fn u64(self, v: u64) -> Self {
        self.bytes(&v.to_le_bytes())
    }

    /// Hashes a `type_name` without its module paths: every identifier
    /// directly followed by `::` is skipped with the `::`.
    const fn type_name(mut self, mut b: &[u8]) -> Self {
        while let [first, rest @ ..] = b {
            if !is_ident_byte(*first) {
                self = self.bytes(&[*first]);
                b = rest;
                continue;
            }
            let (ident, after) = b.split_at(ident_len(b));
            if let [b':', b':', tail @ ..] = after {
                b = tail; // a path segment: left out
            } else {
                self = self.bytes(ident);
                b = after;
            }
        }
        self
    }
}

const fn is_ident_byte(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_'
}

/// The length of the identifier `b` starts with.
const fn ident_len(mut b: &[u8]) -> usize {
    let mut n = 0;
    while let [c, rest @ ..] = b {
        if !is_ident_byte(*c) {
            break;
        }
        n += 1;
        b = rest;
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_separate_types_and_shapes() {
        let a = TypeSpec::of::<u32>();
        assert_ne!(a.fingerprint(), TypeSpec::of::<f32>().fingerprint());
        assert_ne!(a.fingerprint(), TypeSpec::of::<i32>().fingerprint());
        assert_ne!(a.fingerprint(), a.with_capacity(2).fingerprint());
        assert_ne!(a.fingerprint(), a.with_slot_size(64).fingerprint());
        assert_eq!(a.fingerprint(), TypeSpec::of::<u32>().fingerprint());
    }

    #[test]
    fn module_paths_do_not_count_but_names_do() {
        let spec = |name| TypeSpec {
            type_name: name,
            ..TypeSpec::of::<[u64; 2]>()
        };
        let fp = |name| spec(name).fingerprint();
        // The same struct defined in two programs' different modules.
        assert_eq!(fp("app_a::geo::Point"), fp("app_b::Point"));
        assert_eq!(fp("[a::b::Point; 4]"), fp("[Point; 4]"));
        assert_eq!(fp("(u64, x::Point)"), fp("(u64, y::z::Point)"));
        // Another name, or the same name inside another shape, is refused.
        assert_ne!(fp("app::Point"), fp("app::Vec2"));
        assert_ne!(fp("Point"), fp("[Point; 1]"));
        assert_ne!(fp("a::Pair<x::A>"), fp("a::Pair<x::B>"));
        // Primitive names have no path: their fingerprints are unchanged.
        assert_eq!(
            TypeSpec::of::<u32>().fingerprint(),
            Fnv::new()
                .bytes(b"u32")
                .u64(4)
                .u64(4)
                .u64(0)
                .u64(0)
                .u64(LAYOUT_VERSION as u64)
                .u64(usize::BITS as u64)
                .u64(cfg!(target_endian = "little") as u64)
                .0
        );
    }

    #[test]
    fn fnv_matches_reference_vector() {
        // FNV-1a 64 of "a" from the reference implementation.
        assert_eq!(Fnv::new().bytes(b"a").0, 0xaf63_dc4c_8601_ec8c);
    }

    #[test]
    fn kinds_display_their_names() {
        assert_eq!(SegmentKind::QUEUE.to_string(), "Queue");
        assert_eq!(SegmentKind(999).to_string(), "kind 999");
    }
}
