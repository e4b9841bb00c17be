//! Segment names: validation and unique generation.

use std::ffi::{CStr, CString};
use std::fmt;

use crate::error::{NameError, SegmentError};

/// The longest name accepted, in bytes, not counting the leading `/`
/// (Linux's `NAME_MAX` for a file in `/dev/shm`).
pub const MAX_NAME_LEN: usize = 255;

/// The prefix of every name that [`SegmentName::unique`] generates.
pub const NAME_PREFIX: &str = "shmproc-";

/// A validated POSIX shared-memory name: a `/`, then 1 to [`MAX_NAME_LEN`]
/// bytes with no other `/` and no NUL, and not `.` or `..`.
///
/// Python's `SharedMemory(name="psm_x")` takes names without the slash; so do
/// we: `"psm_x"` and `"/psm_x"` name the same segment, `/dev/shm/psm_x`.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct SegmentName {
    /// Always starts with `/`.
    c: CString,
}

impl SegmentName {
    /// Validates `name` (with or without its leading `/`).
    ///
    /// # Errors
    /// [`SegmentError::InvalidName`] with the reason: empty, too long, a `/`
    /// inside, a NUL byte, or `.`/`..`.
    pub fn new(name: &str) -> Result<Self, SegmentError> {
        let bare = name.strip_prefix('/').unwrap_or(name);
        let reason = if bare.is_empty() {
            Some(NameError::Empty)
        } else if bare.len() > MAX_NAME_LEN {
            Some(NameError::TooLong {
                len: bare.len(),
                max: MAX_NAME_LEN,
            })
        } else if bare.contains('/') {
            Some(NameError::Slash)
        } else if bare.contains('\0') {
            Some(NameError::Nul)
        } else if bare == "." || bare == ".." {
            Some(NameError::Dot)
        } else {
            None
        };
        if let Some(reason) = reason {
            return Err(SegmentError::InvalidName {
                name: name.to_owned(),
                reason,
            });
        }
        let c = CString::new(format!("/{bare}")).map_err(|_| SegmentError::InvalidName {
            name: name.to_owned(),
            reason: NameError::Nul,
        })?;
        Ok(Self { c })
    }

    /// A fresh name no other live segment uses:
    /// `/shmproc-<pid hex>-<random hex>-<tag>`.
    ///
    /// `tag` (up to 12 bytes of `[A-Za-z0-9_-]` are kept) says what the
    /// segment holds, for `ls /dev/shm`.
    pub fn unique(tag: &str) -> Self {
        let tag: String = tag
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '-')
            .take(12)
            .collect();
        let pid = crate::os::identity::pid();
        let rand = crate::os::random_u64() & 0xffff_ffff_ffff;
        let s = if tag.is_empty() {
            format!("/{NAME_PREFIX}{pid:x}-{rand:012x}")
        } else {
            format!("/{NAME_PREFIX}{pid:x}-{rand:012x}-{tag}")
        };
        Self::new(&s).expect("generated names are valid by construction")
    }

    /// The name with its leading `/`, as `shm_open` takes it.
    pub fn as_str(&self) -> &str {
        self.c
            .to_str()
            .expect("built from a &str, so it is valid UTF-8")
    }

    /// The name without the leading `/`, as Python's `SharedMemory.name`
    /// shows it and as the file appears in `/dev/shm`.
    pub fn bare(&self) -> &str {
        self.as_str().get(1..).unwrap_or_default()
    }

    /// The name as a C string, with its leading `/`.
    pub fn as_c_str(&self) -> &CStr {
        &self.c
    }
}

impl fmt::Display for SegmentName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for SegmentName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SegmentName({:?})", self.as_str())
    }
}

impl std::str::FromStr for SegmentName {
    type Err = SegmentError;
    fn from_str(s: &str) -> Result<Self, SegmentError> {
        Self::new(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leading_slash_is_optional() {
        assert_eq!(
            SegmentName::new("a").unwrap(),
            SegmentName::new("/a").unwrap()
        );
        assert_eq!(SegmentName::new("abc").unwrap().as_str(), "/abc");
        assert_eq!(SegmentName::new("/abc").unwrap().bare(), "abc");
    }

    #[test]
    fn bad_names_are_rejected_with_their_reason() {
        let reason = |n: &str| match SegmentName::new(n) {
            Err(SegmentError::InvalidName { reason, .. }) => reason,
            other => panic!("{n:?}: expected InvalidName, got {other:?}"),
        };
        assert_eq!(reason(""), NameError::Empty);
        assert_eq!(reason("/"), NameError::Empty);
        assert_eq!(reason("a/b"), NameError::Slash);
        assert_eq!(reason("a\0b"), NameError::Nul);
        assert_eq!(reason(".."), NameError::Dot);
        assert_eq!(
            reason(&"x".repeat(256)),
            NameError::TooLong { len: 256, max: 255 }
        );
        assert!(SegmentName::new(&"x".repeat(255)).is_ok());
    }

    #[test]
    fn unique_names_differ_and_are_short() {
        let a = SegmentName::unique("queue");
        let b = SegmentName::unique("queue");
        assert_ne!(a, b);
        assert!(a.bare().starts_with(NAME_PREFIX));
        assert!(a.as_str().len() <= 48, "{a}");
    }
}
