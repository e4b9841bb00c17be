//! Reading a segment as untrusted bytes, for tools (`shmproc ls`,
//! `shmproc inspect`): a copy of its first bytes, read through a read-only
//! descriptor, and its header decoded and checked field by field.
//!
//! Nothing here maps the segment: a file truncated under the reader is a
//! short read, never a `SIGBUS`, and looking needs no right to write. The
//! copy is a snapshot: a field another process changes while it is read may
//! be torn, and the kind-specific decoders (`shmproc_channel::inspect`,
//! `shmproc_sync::inspect`) say so where it matters.
//!
//! Every decoder takes any bytes: a field that does not fit in the copy is
//! `None`, a field with an impossible value is a [`Problem`] naming the
//! field, what was found and what was expected. Never a panic.
//!
//! # Examples
//! ```
//! # fn main() -> Result<(), shmproc_shm::SegmentError> {
//! use shmproc_shm::inspect::Snapshot;
//! use shmproc_shm::{ShmSlice, SegmentName};
//!
//! let name = SegmentName::unique("doc-inspect");
//! let _squares = ShmSlice::create(name.as_str(), 8, 0u64)?;
//! let snap = Snapshot::read(name.as_str(), 4096)?;
//! let header = snap.header();
//! assert!(header.problems.is_empty());
//! assert_eq!(header.kind, Some(shmproc_shm::SegmentKind::SLICE));
//! assert_eq!(header.type_name.as_deref(), Some("u64"));
//! # Ok(()) }
//! ```

use std::fmt;
use std::io::Read;
use std::mem::offset_of;

use crate::error::SegmentError;
use crate::header::{
    DATA_OFFSET, FLAG_PERSISTENT, HEADER_LEN, LAYOUT_VERSION, MAGIC, STATE_INITIALIZING,
    STATE_POISONED, STATE_READY, STATE_UNINIT, SegmentHeader, SegmentKind,
};
use crate::name::SegmentName;
use crate::segment::{TYPE_NAME_AT, TYPE_NAME_MAX};

/// The largest pid Linux hands out (`PID_MAX_LIMIT`, 2^22).
const PID_MAX: u32 = 1 << 22;

/// A copy of the first bytes of a named segment, and the file's length.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    name: String,
    file_len: u64,
    bytes: Vec<u8>,
}

impl Snapshot {
    /// Reads up to `max_len` bytes of the named segment `name` (with or
    /// without its leading `/`) from `/dev/shm`, through a descriptor opened
    /// read-only, non-blocking and without following links.
    ///
    /// # Errors
    /// [`InvalidName`](SegmentError::InvalidName), [`NotFound`](SegmentError::NotFound),
    /// [`PermissionDenied`](SegmentError::PermissionDenied) or
    /// [`Io`](SegmentError::Io); [`Corrupt`](SegmentError::Corrupt) (field
    /// "file type") for an entry that is not a regular file.
    pub fn read(name: &str, max_len: usize) -> Result<Self, SegmentError> {
        use std::os::unix::fs::OpenOptionsExt;
        let name = SegmentName::new(name)?;
        let label = name.as_str().to_owned();
        let file = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK | libc::O_NOFOLLOW)
            .open(std::path::Path::new("/dev/shm").join(name.bare()))
            .map_err(|e| SegmentError::from_os(&label, "open", e))?;
        let meta = file
            .metadata()
            .map_err(|e| SegmentError::from_os(&label, "fstat", e))?;
        if !meta.is_file() {
            return Err(SegmentError::Corrupt {
                name: label,
                field: "file type",
                found: 0,
                expected: 0,
            });
        }
        let want = usize::try_from(meta.len()).map_or(max_len, |l| l.min(max_len));
        let mut bytes = Vec::with_capacity(want);
        file.take(want as u64)
            .read_to_end(&mut bytes)
            .map_err(|e| SegmentError::from_os(&label, "read", e))?;
        Ok(Self {
            name: name.bare().to_owned(),
            file_len: meta.len(),
            bytes,
        })
    }

    /// A snapshot of `bytes`, the first bytes of a segment `file_len` bytes
    /// long (for tests and fuzzing).
    pub fn from_bytes(name: &str, bytes: Vec<u8>, file_len: u64) -> Self {
        Self {
            name: name.strip_prefix('/').unwrap_or(name).to_owned(),
            file_len,
            bytes,
        }
    }

    /// The name, without the leading `/`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The file's length when it was read.
    pub fn file_len(&self) -> u64 {
        self.file_len
    }

    /// The bytes read, from the start of the segment.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The bytes read from [`DATA_OFFSET`] on (empty when fewer were read).
    pub fn payload(&self) -> &[u8] {
        self.bytes.get(DATA_OFFSET..).unwrap_or_default()
    }

    /// The payload length the file has room for (0 when it is shorter
    /// than [`DATA_OFFSET`]).
    pub fn payload_len(&self) -> u64 {
        self.file_len.saturating_sub(DATA_OFFSET as u64)
    }

    /// The header, decoded and checked field by field.
    pub fn header(&self) -> HeaderReport {
        HeaderReport::decode(&self.bytes, self.file_len)
    }
}

/// One thing wrong with a segment: the field, the value found and what was
/// expected, as text for a person to read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The field (`"magic"`, `"segment_len"`, `"ring capacity"`, ...).
    pub field: String,
    /// The value found.
    pub found: String,
    /// What a valid segment has there.
    pub expected: String,
}

impl Problem {
    /// A problem with `field`.
    pub fn new(
        field: impl Into<String>,
        found: impl fmt::Display,
        expected: impl fmt::Display,
    ) -> Self {
        Self {
            field: field.into(),
            found: found.to_string(),
            expected: expected.to_string(),
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: found {}, expected {}",
            self.field, self.found, self.expected
        )
    }
}

/// The `u32` at byte `off` of `bytes` (native endian, as the segment's
/// creator wrote it), or `None` past the end.
pub fn u32_at(bytes: &[u8], off: usize) -> Option<u32> {
    let b = bytes.get(off..)?.first_chunk::<4>()?;
    Some(u32::from_ne_bytes(*b))
}

/// The `u64` at byte `off` of `bytes` (native endian), or `None` past the end.
pub fn u64_at(bytes: &[u8], off: usize) -> Option<u64> {
    let b = bytes.get(off..)?.first_chunk::<8>()?;
    Some(u64::from_ne_bytes(*b))
}

/// The name of a header `state` value, or `None` for a value no creator writes.
pub fn state_name(state: u32) -> Option<&'static str> {
    match state {
        STATE_UNINIT => Some("uninit"),
        STATE_INITIALIZING => Some("initialising"),
        STATE_READY => Some("ready"),
        STATE_POISONED => Some("poisoned"),
        _ => None,
    }
}

/// A segment header decoded from a copy of its bytes: each field, `None`
/// where the copy is too short to hold it, and every problem found.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct HeaderReport {
    /// See [`SegmentHeader::magic`].
    pub magic: Option<u64>,
    /// See [`SegmentHeader::layout_version`].
    pub layout_version: Option<u32>,
    /// See [`SegmentHeader::header_len`].
    pub header_len: Option<u32>,
    /// See [`SegmentHeader::segment_len`].
    pub segment_len: Option<u64>,
    /// See [`SegmentHeader::fingerprint`].
    pub fingerprint: Option<u64>,
    /// See [`SegmentHeader::kind`].
    pub kind: Option<SegmentKind>,
    /// See [`SegmentHeader::state`].
    pub state: Option<u32>,
    /// See [`SegmentHeader::creator_pid`].
    pub creator_pid: Option<u32>,
    /// See [`SegmentHeader::flags`].
    pub flags: Option<u32>,
    /// See [`SegmentHeader::capacity`].
    pub capacity: Option<u64>,
    /// See [`SegmentHeader::session`].
    pub session: Option<u64>,
    /// The element type's name its creator recorded after the header
    /// (module paths left out), when there is one.
    pub type_name: Option<String>,
    /// Everything wrong, field by field; empty for a valid header.
    pub problems: Vec<Problem>,
}

impl HeaderReport {
    /// Decodes the header from `bytes`, the start of a segment whose file is
    /// `file_len` bytes long, and checks every field on its own.
    pub fn decode(bytes: &[u8], file_len: u64) -> Self {
        let u32f = |off| u32_at(bytes, off);
        let u64f = |off| u64_at(bytes, off);
        let mut r = Self {
            magic: u64f(offset_of!(SegmentHeader, magic)),
            layout_version: u32f(offset_of!(SegmentHeader, layout_version)),
            header_len: u32f(offset_of!(SegmentHeader, header_len)),
            segment_len: u64f(offset_of!(SegmentHeader, segment_len)),
            fingerprint: u64f(offset_of!(SegmentHeader, fingerprint)),
            kind: u32f(offset_of!(SegmentHeader, kind)).map(SegmentKind),
            state: u32f(offset_of!(SegmentHeader, state)),
            creator_pid: u32f(offset_of!(SegmentHeader, creator_pid)),
            flags: u32f(offset_of!(SegmentHeader, flags)),
            capacity: u64f(offset_of!(SegmentHeader, capacity)),
            session: u64f(offset_of!(SegmentHeader, session)),
            type_name: None,
            problems: Vec::new(),
        };
        r.check(bytes, file_len);
        r
    }

    fn check(&mut self, bytes: &[u8], file_len: u64) {
        let p = &mut self.problems;
        if file_len < DATA_OFFSET as u64 {
            p.push(Problem::new(
                "file length",
                format!("{file_len} bytes"),
                format!("at least {DATA_OFFSET} (the header and its spare line)"),
            ));
        }
        if self.magic == Some(0)
            && self.state == Some(STATE_UNINIT)
            && self.kind == Some(SegmentKind(0))
        {
            p.push(Problem::new(
                "header",
                "all zero",
                "a written header (its creator is still starting, or died before writing it)",
            ));
            return;
        }
        if let Some(m) = self.magic.filter(|&m| m != MAGIC) {
            p.push(Problem::new(
                "magic",
                format!("{m:#018x} ({})", printable(&m.to_le_bytes())),
                format!("{MAGIC:#018x} (\"SHMPROC\\0\")"),
            ));
        }
        if let Some(v) = self.layout_version.filter(|&v| v != LAYOUT_VERSION) {
            p.push(Problem::new("layout_version", v, LAYOUT_VERSION));
        }
        if let Some(h) = self.header_len.filter(|&h| h != HEADER_LEN) {
            p.push(Problem::new("header_len", h, HEADER_LEN));
        }
        if let Some(l) = self.segment_len.filter(|&l| l != file_len) {
            p.push(Problem::new(
                "segment_len",
                l,
                format!("{file_len} (the file's length)"),
            ));
        }
        if let Some(k) = self.kind.filter(|k| k.name().is_none()) {
            p.push(Problem::new("kind", k.0, "a kind this build knows"));
        }
        if let Some(s) = self.state.filter(|&s| state_name(s).is_none()) {
            p.push(Problem::new(
                "state",
                s,
                "0 (uninit), 1 (initialising), 2 (ready) or 3 (poisoned)",
            ));
        }
        if let Some(pid) = self.creator_pid.filter(|&pid| pid == 0 || pid > PID_MAX) {
            p.push(Problem::new(
                "creator_pid",
                pid,
                format!("a pid in 1..={PID_MAX}"),
            ));
        }
        if let Some(f) = self.flags.filter(|&f| f & !FLAG_PERSISTENT != 0) {
            p.push(Problem::new(
                "flags",
                format!("{f:#x}"),
                "0 or 1 (persistent)",
            ));
        }
        if let Some(&len) = bytes.get(TYPE_NAME_AT) {
            let len = usize::from(len);
            let name = bytes.get(TYPE_NAME_AT + 1..).unwrap_or_default();
            if len > TYPE_NAME_MAX {
                p.push(Problem::new(
                    "type name length",
                    len,
                    format!("at most {TYPE_NAME_MAX}"),
                ));
            } else if let Some(name) = name.get(..len) {
                match std::str::from_utf8(name) {
                    Ok("") => {}
                    Ok(s) => self.type_name = Some(s.to_owned()),
                    Err(_) => p.push(Problem::new("type name", printable(name), "UTF-8 text")),
                }
            }
        }
    }

    /// Whether anything is wrong with the header.
    pub fn is_corrupt(&self) -> bool {
        !self.problems.is_empty()
    }

    /// Whether the persistent flag is set.
    pub fn persistent(&self) -> bool {
        self.flags.is_some_and(|f| f & FLAG_PERSISTENT != 0)
    }
}

/// Bytes as text: printable ASCII as is, anything else as `\xNN`.
fn printable(bytes: &[u8]) -> String {
    let mut s = String::from("\"");
    for &b in bytes {
        if b.is_ascii_graphic() || b == b' ' {
            s.push(char::from(b));
        } else {
            s.push_str(&format!("\\x{b:02x}"));
        }
    }
    s.push('"');
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Segment, SegmentLayout, TypeSpec};

    fn real_segment_bytes() -> Vec<u8> {
        let name = SegmentName::unique("inspect");
        let layout = SegmentLayout::new(
            SegmentKind::TEST,
            TypeSpec::of::<[u32; 3]>().with_capacity(2),
            24,
        );
        let _seg = Segment::create(name.as_str(), &layout)
            .expect("create")
            .publish();
        let snap = Snapshot::read(name.as_str(), 4096).expect("read");
        assert_eq!(snap.file_len(), 128 + 24);
        assert_eq!(snap.bytes().len(), 128 + 24);
        snap.bytes().to_vec()
    }

    #[test]
    fn a_real_header_decodes_without_problems() {
        let bytes = real_segment_bytes();
        let h = HeaderReport::decode(&bytes, bytes.len() as u64);
        assert_eq!(h.problems, []);
        assert_eq!(h.kind, Some(SegmentKind::TEST));
        assert_eq!(h.state, Some(STATE_READY));
        assert_eq!(h.creator_pid, Some(std::process::id()));
        assert_eq!(h.capacity, Some(2));
        assert_eq!(h.type_name.as_deref(), Some("[u32; 3]"));
        assert!(!h.persistent());
    }

    #[test]
    fn each_bad_field_is_named() {
        let mut bytes = real_segment_bytes();
        let len = bytes.len() as u64;
        let set32 = |b: &mut Vec<u8>, off: usize, v: u32| {
            b.splice(off..off + 4, v.to_ne_bytes());
        };
        bytes.splice(0..8, *b"SCRIBBLE");
        set32(&mut bytes, offset_of!(SegmentHeader, layout_version), 9);
        set32(&mut bytes, offset_of!(SegmentHeader, kind), 4242);
        set32(&mut bytes, offset_of!(SegmentHeader, state), 7);
        set32(&mut bytes, offset_of!(SegmentHeader, flags), 6);
        let h = HeaderReport::decode(&bytes, len + 64);
        let fields: Vec<&str> = h.problems.iter().map(|p| p.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "magic",
                "layout_version",
                "segment_len",
                "kind",
                "state",
                "flags"
            ]
        );
        let magic = h.problems.first().expect("a magic problem");
        assert!(magic.found.contains("SCRIBBLE"), "{magic}");
    }

    #[test]
    fn any_prefix_and_any_bytes_decode_without_panic() {
        let bytes = real_segment_bytes();
        for n in 0..=bytes.len() {
            let prefix = bytes.get(..n).expect("in range");
            let h = HeaderReport::decode(prefix, n as u64);
            assert_eq!(h.magic.is_some(), n >= 8);
            if n < DATA_OFFSET {
                assert!(h.is_corrupt(), "{n} bytes");
            }
        }
        let mut x = 0x9e37_79b9_7f4a_7c15_u64;
        for _ in 0..2000 {
            let noise: Vec<u8> = (0..160)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    x as u8
                })
                .collect();
            let _ = HeaderReport::decode(&noise, x % 512);
        }
    }

    #[test]
    fn an_all_zero_header_is_reported_as_unwritten() {
        let h = HeaderReport::decode(&[0; 128], 128);
        assert_eq!(h.problems.len(), 1, "{:?}", h.problems);
        assert_eq!(h.problems.first().map(|p| p.field.as_str()), Some("header"));
    }

    #[test]
    fn missing_segments_are_not_found() {
        let name = SegmentName::unique("inspect-none");
        assert!(matches!(
            Snapshot::read(name.as_str(), 64),
            Err(SegmentError::NotFound { .. })
        ));
    }
}
