//! [`ShareableList`]: Python's `shared_memory.ShareableList`, a fixed-length
//! list of `i64`, `f64`, `bool`, `str`, `bytes` and `None` in one segment.
//!
//! # Layout (all little-endian)
//! ```text
//!  offset            field
//!  0                 magic   u64  b"SHLIST01"
//!  8                 count   u64  number of items
//!  16 + 16*i         tag_i   u32  0 None, 1 i64, 2 f64, 3 bool, 4 str, 5 bytes
//!  20 + 16*i         len_i   u32  bytes of item i in use (<= cap_i)
//!  24 + 16*i         cap_i   u32  bytes of slot i (fixed at creation, multiple of 8)
//!  28 + 16*i         0       u32
//!  16 + 16*count     slots, slot i at the sum of cap_0 .. cap_(i-1)
//! ```
//! Every item carries its length, so trailing NULs and multi-byte UTF-8
//! survive (Python's strips trailing NULs: gh-106939). The count and the
//! capacities are read once at open, checked against the segment size and
//! kept locally; a tag or length read later is validated on every read.
//!
//! Like Python's, the list is not synchronised: a reader racing a writer of
//! the same item may see a torn item (a typed [`Corrupt`](ShareableListError::Corrupt)
//! error or a mix of old and new bytes, never undefined behaviour). Guard
//! concurrent writes with a `Lock`.

use std::fmt;

use shmproc_shm::{SegmentError, SharedObject, Source};

use crate::SharedMemory;

const MAGIC: &[u8; 8] = b"SHLIST01";
const HEADER: usize = 16;
const ENTRY: usize = 16;
/// The smallest slot (Python's 8-byte alignment): numbers, bools and `None`.
pub const MIN_SLOT: usize = 8;
/// The largest number of items in one list.
pub const MAX_ITEMS: usize = 1 << 24;

const TAG_NONE: u32 = 0;
const TAG_INT: u32 = 1;
const TAG_FLOAT: u32 = 2;
const TAG_BOOL: u32 = 3;
const TAG_STR: u32 = 4;
const TAG_BYTES: u32 = 5;

/// One item of a [`ShareableList`].
#[derive(Debug, Clone, PartialEq)]
pub enum Item {
    /// Python's `None`.
    None,
    /// An `int` (64-bit, as Python's `ShareableList` stores it).
    Int(i64),
    /// A `float`.
    Float(f64),
    /// A `bool`.
    Bool(bool),
    /// A `str`: any UTF-8, NULs included.
    Str(String),
    /// `bytes`: any bytes, trailing NULs included.
    Bytes(Vec<u8>),
}

impl Item {
    fn tag(&self) -> u32 {
        match self {
            Item::None => TAG_NONE,
            Item::Int(_) => TAG_INT,
            Item::Float(_) => TAG_FLOAT,
            Item::Bool(_) => TAG_BOOL,
            Item::Str(_) => TAG_STR,
            Item::Bytes(_) => TAG_BYTES,
        }
    }

    /// The encoded bytes (numbers little-endian).
    fn encode(&self) -> Vec<u8> {
        match self {
            Item::None => Vec::new(),
            Item::Int(v) => v.to_le_bytes().to_vec(),
            Item::Float(v) => v.to_le_bytes().to_vec(),
            Item::Bool(v) => vec![u8::from(*v)],
            Item::Str(s) => s.as_bytes().to_vec(),
            Item::Bytes(b) => b.clone(),
        }
    }

    /// The slot a new list gives this item: its length rounded up to 8.
    fn slot_len(&self) -> usize {
        let n = self.encode().len();
        n.div_ceil(MIN_SLOT).max(1) * MIN_SLOT
    }

    fn decode(tag: u32, bytes: &[u8]) -> Option<Item> {
        let arr8 = || <[u8; 8]>::try_from(bytes).ok();
        Some(match tag {
            TAG_NONE if bytes.is_empty() => Item::None,
            TAG_INT => Item::Int(i64::from_le_bytes(arr8()?)),
            TAG_FLOAT => Item::Float(f64::from_le_bytes(arr8()?)),
            TAG_BOOL => match bytes {
                [0] => Item::Bool(false),
                [1] => Item::Bool(true),
                _ => return None,
            },
            TAG_STR => Item::Str(String::from_utf8(bytes.to_vec()).ok()?),
            TAG_BYTES => Item::Bytes(bytes.to_vec()),
            _ => return None,
        })
    }
}

macro_rules! item_from {
    ($($t:ty => $v:ident $(as $c:ty)?),*) => {$(
        impl From<$t> for Item {
            fn from(x: $t) -> Self { Item::$v(x $(as $c)?) }
        }
    )*};
}
item_from!(i64 => Int, i32 => Int as i64, u32 => Int as i64, f64 => Float, bool => Bool, String => Str, Vec<u8> => Bytes);

impl From<&str> for Item {
    fn from(s: &str) -> Self {
        Item::Str(s.to_owned())
    }
}
impl From<&[u8]> for Item {
    fn from(b: &[u8]) -> Self {
        Item::Bytes(b.to_vec())
    }
}
impl From<()> for Item {
    fn from((): ()) -> Self {
        Item::None
    }
}
impl<T: Into<Item>> From<Option<T>> for Item {
    fn from(o: Option<T>) -> Self {
        o.map_or(Item::None, Into::into)
    }
}

/// What a [`ShareableList`] operation can fail with.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ShareableListError {
    /// Creating or opening the segment failed.
    #[error(transparent)]
    Segment(#[from] SegmentError),
    /// The index is past the end.
    #[error("index {index} out of range for a ShareableList of {len} items")]
    Index {
        /// The index asked for.
        index: usize,
        /// Number of items.
        len: usize,
    },
    /// The new value needs more bytes than the item's slot holds (slots are
    /// fixed at creation, as in Python).
    #[error("item {index}: the new value needs {needed} bytes, its slot holds {capacity}")]
    TooLarge {
        /// The item.
        index: usize,
        /// Bytes the new value needs.
        needed: usize,
        /// Bytes the slot holds.
        capacity: usize,
    },
    /// Too many items, or slots too large for a `u32` length.
    #[error("a ShareableList holds at most {MAX_ITEMS} items of at most 4 GiB each")]
    TooMany,
    /// The segment is not a ShareableList, or its contents are inconsistent
    /// (another process wrote something else, or a write was torn).
    #[error("segment {name}: not a valid ShareableList: {what}")]
    Corrupt {
        /// The segment.
        name: String,
        /// What is wrong.
        what: String,
    },
}

/// A fixed-length list in shared memory (Python's
/// `shared_memory.ShareableList`).
///
/// # Examples
/// ```
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use shmproc_manager::{Item, ShareableList};
/// let name = shmproc_shm::SegmentName::unique("doc-sl");
/// let sl = ShareableList::create(name.as_str(), [Item::from("héllo\0"), 42i64.into(), Item::None])?;
/// let other = ShareableList::open(name.as_str())?;
/// assert_eq!(other.get(0)?, Item::from("héllo\0"));
/// other.set(1, 2.5)?;
/// assert_eq!(sl.get(1)?, Item::Float(2.5));
/// assert!(sl.set(0, "a string much longer than its slot").is_err());
/// # Ok(()) }
/// ```
#[doc(alias = "shared_memory.ShareableList")]
pub struct ShareableList {
    shm: SharedMemory,
    /// `(offset, capacity)` of every slot, read and checked once at open.
    slots: Vec<(usize, usize)>,
}

impl ShareableList {
    /// Creates the named list `name` holding `items`, each slot sized for
    /// its item (rounded up to 8 bytes).
    ///
    /// # Errors
    /// As [`SharedMemory::create`]; [`TooMany`](ShareableListError::TooMany).
    pub fn create<I: Into<Item>>(
        name: &str,
        items: impl IntoIterator<Item = I>,
    ) -> Result<Self, ShareableListError> {
        Self::build(Some(name), items, 0)
    }

    /// As [`create`](Self::create), every slot at least `min_slot` bytes (room
    /// for longer values later).
    ///
    /// # Errors
    /// As [`create`](Self::create).
    pub fn create_with_slots<I: Into<Item>>(
        name: &str,
        items: impl IntoIterator<Item = I>,
        min_slot: usize,
    ) -> Result<Self, ShareableListError> {
        Self::build(Some(name), items, min_slot)
    }

    /// An anonymous list holding `items`.
    ///
    /// # Errors
    /// As [`create`](Self::create).
    pub fn new<I: Into<Item>>(
        items: impl IntoIterator<Item = I>,
    ) -> Result<Self, ShareableListError> {
        Self::build(None, items, 0)
    }

    fn build<I: Into<Item>>(
        name: Option<&str>,
        items: impl IntoIterator<Item = I>,
        min_slot: usize,
    ) -> Result<Self, ShareableListError> {
        let items: Vec<Item> = items.into_iter().map(Into::into).collect();
        if items.len() > MAX_ITEMS {
            return Err(ShareableListError::TooMany);
        }
        let min_slot = min_slot.div_ceil(MIN_SLOT) * MIN_SLOT;
        let caps: Vec<usize> = items.iter().map(|i| i.slot_len().max(min_slot)).collect();
        if caps.iter().any(|&c| u32::try_from(c).is_err()) {
            return Err(ShareableListError::TooMany);
        }
        let table = HEADER + ENTRY * items.len();
        let total = caps
            .iter()
            .try_fold(table, |acc, &c| acc.checked_add(c))
            .ok_or(ShareableListError::TooMany)?;
        let shm = match name {
            Some(n) => SharedMemory::create(n, total)?,
            None => SharedMemory::new(total)?,
        };
        let mut head = vec![0u8; table];
        put(&mut head, 0, MAGIC);
        put(&mut head, 8, &(items.len() as u64).to_le_bytes());
        let mut slots = Vec::with_capacity(items.len());
        let mut off = table;
        for (i, (item, &cap)) in items.iter().zip(&caps).enumerate() {
            let e = HEADER + ENTRY * i;
            let bytes = item.encode();
            put(&mut head, e, &item.tag().to_le_bytes());
            put(&mut head, e + 4, &(bytes.len() as u32).to_le_bytes());
            put(&mut head, e + 8, &(cap as u32).to_le_bytes());
            shm.write(off, &bytes).map_err(|_| internal(&shm))?;
            slots.push((off, cap));
            off += cap;
        }
        shm.write(0, &head).map_err(|_| internal(&shm))?;
        Ok(Self { shm, slots })
    }

    /// Opens the existing list `name`; its table is read and checked once.
    ///
    /// # Errors
    /// As [`SharedMemory::open`]; [`Corrupt`](ShareableListError::Corrupt)
    /// when the segment does not hold a valid list.
    pub fn open(name: &str) -> Result<Self, ShareableListError> {
        Self::from_shm(SharedMemory::open(name)?)
    }

    fn from_shm(shm: SharedMemory) -> Result<Self, ShareableListError> {
        let corrupt = |what: String| ShareableListError::Corrupt {
            name: shm.name().unwrap_or("(anonymous)").to_owned(),
            what,
        };
        let size = shm.size();
        let mut head = [0u8; HEADER];
        shm.read(0, &mut head)
            .map_err(|_| corrupt(format!("{size} bytes, too small for the header")))?;
        if head.get(..8) != Some(MAGIC.as_slice()) {
            return Err(corrupt("bad magic".into()));
        }
        let count = u64::from_le_bytes(
            head.get(8..16)
                .and_then(|b| b.try_into().ok())
                .unwrap_or_default(),
        );
        let count = usize::try_from(count)
            .ok()
            .filter(|&c| c <= MAX_ITEMS && HEADER + ENTRY * c <= size)
            .ok_or_else(|| corrupt(format!("count {count} does not fit {size} bytes")))?;
        let mut table = vec![0u8; ENTRY * count];
        shm.read(HEADER, &mut table)
            .map_err(|_| corrupt("table out of bounds".into()))?;
        let mut slots = Vec::with_capacity(count);
        let mut off = HEADER + ENTRY * count;
        for (i, e) in table.chunks_exact(ENTRY).enumerate() {
            let cap = u32_at(e, 8) as usize;
            let end = off
                .checked_add(cap)
                .filter(|&end| end <= size)
                .ok_or_else(|| {
                    corrupt(format!(
                        "slot {i} ({cap} bytes at {off}) past the end ({size})"
                    ))
                })?;
            slots.push((off, cap));
            off = end;
        }
        Ok(Self { shm, slots })
    }

    /// Number of items (`len(sl)`).
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// Whether the list has no items.
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    fn slot(&self, index: usize) -> Result<(usize, usize), ShareableListError> {
        self.slots
            .get(index)
            .copied()
            .ok_or(ShareableListError::Index {
                index,
                len: self.len(),
            })
    }

    fn corrupt(&self, what: String) -> ShareableListError {
        ShareableListError::Corrupt {
            name: self.shm.name().unwrap_or("(anonymous)").to_owned(),
            what,
        }
    }

    /// Item `index` (`sl[index]`).
    ///
    /// # Errors
    /// [`Index`](ShareableListError::Index) past the end;
    /// [`Corrupt`](ShareableListError::Corrupt) for a tag or length another
    /// process wrote that makes no sense (or a torn write).
    pub fn get(&self, index: usize) -> Result<Item, ShareableListError> {
        let (off, cap) = self.slot(index)?;
        let mut e = [0u8; 8];
        self.shm
            .read(HEADER + ENTRY * index, &mut e)
            .map_err(|_| self.corrupt("table".into()))?;
        let (tag, len) = (u32_at(&e, 0), u32_at(&e, 4) as usize);
        if len > cap {
            return Err(self.corrupt(format!("item {index}: length {len} > slot {cap}")));
        }
        let mut bytes = vec![0u8; len];
        self.shm
            .read(off, &mut bytes)
            .map_err(|_| self.corrupt("slot".into()))?;
        Item::decode(tag, &bytes)
            .ok_or_else(|| self.corrupt(format!("item {index}: tag {tag} with {len} bytes")))
    }

    /// Sets item `index` (`sl[index] = value`); the type may change, as in
    /// Python, as long as the value fits the slot.
    ///
    /// # Errors
    /// [`Index`](ShareableListError::Index);
    /// [`TooLarge`](ShareableListError::TooLarge) when the value does not fit
    /// its slot (nothing is written).
    pub fn set(&self, index: usize, value: impl Into<Item>) -> Result<(), ShareableListError> {
        let (off, cap) = self.slot(index)?;
        let item = value.into();
        let bytes = item.encode();
        if bytes.len() > cap {
            return Err(ShareableListError::TooLarge {
                index,
                needed: bytes.len(),
                capacity: cap,
            });
        }
        self.shm
            .write(off, &bytes)
            .map_err(|_| self.corrupt("slot".into()))?;
        let mut e = [0u8; 8];
        put(&mut e, 0, &item.tag().to_le_bytes());
        put(&mut e, 4, &(bytes.len() as u32).to_le_bytes());
        self.shm
            .write(HEADER + ENTRY * index, &e)
            .map_err(|_| self.corrupt("table".into()))
    }

    /// Bytes the slot of item `index` holds.
    ///
    /// # Errors
    /// [`Index`](ShareableListError::Index).
    pub fn slot_capacity(&self, index: usize) -> Result<usize, ShareableListError> {
        Ok(self.slot(index)?.1)
    }

    /// Every item.
    ///
    /// # Errors
    /// As [`get`](Self::get).
    pub fn to_vec(&self) -> Result<Vec<Item>, ShareableListError> {
        (0..self.len()).map(|i| self.get(i)).collect()
    }

    /// How many items equal `value` (`sl.count(value)`).
    ///
    /// # Errors
    /// As [`get`](Self::get).
    pub fn count(&self, value: impl Into<Item>) -> Result<usize, ShareableListError> {
        let v = value.into();
        Ok(self.to_vec()?.iter().filter(|x| **x == v).count())
    }

    /// The first index holding `value` (`sl.index(value)`), `None` when none
    /// does (Python raises `ValueError`).
    ///
    /// # Errors
    /// As [`get`](Self::get).
    pub fn index(&self, value: impl Into<Item>) -> Result<Option<usize>, ShareableListError> {
        let v = value.into();
        for i in 0..self.len() {
            if self.get(i)? == v {
                return Ok(Some(i));
            }
        }
        Ok(None)
    }

    /// The underlying block (`sl.shm`).
    pub fn shm(&self) -> &SharedMemory {
        &self.shm
    }

    pub(crate) fn into_shm(self) -> SharedMemory {
        self.shm
    }

    /// The underlying block, to [`persist`](SharedMemory::persist) it, say.
    pub fn shm_mut(&mut self) -> &mut SharedMemory {
        &mut self.shm
    }
}

fn internal(shm: &SharedMemory) -> ShareableListError {
    ShareableListError::Corrupt {
        name: shm.name().unwrap_or("(anonymous)").to_owned(),
        what: "a fresh segment is smaller than its layout".into(),
    }
}

/// Writes `b` at `at` in a local buffer sized by the caller.
fn put(buf: &mut [u8], at: usize, b: &[u8]) {
    if let Some(dst) = buf.get_mut(at..at + b.len()) {
        dst.copy_from_slice(b);
    }
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    b.get(at..at + 4)
        .and_then(|s| s.try_into().ok())
        .map_or(0, u32::from_le_bytes)
}

impl fmt::Debug for ShareableList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ShareableList")
            .field("name", &self.shm.name())
            .field("len", &self.len())
            .finish()
    }
}

impl SharedObject for ShareableList {
    const WHAT: &'static str = "ShareableList";
    type Error = ShareableListError;

    fn segment(&self) -> &shmproc_shm::Segment {
        self.shm.segment()
    }

    fn open_source(source: Source<'_>) -> Result<Self, ShareableListError> {
        Self::from_shm(SharedMemory::open_source(source)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slot_lengths_round_up_to_eight() {
        assert_eq!(Item::None.slot_len(), 8);
        assert_eq!(Item::from("").slot_len(), 8);
        assert_eq!(Item::from("123456789").slot_len(), 16);
        assert_eq!(Item::Int(1).slot_len(), 8);
    }

    #[test]
    fn decode_rejects_nonsense() {
        assert_eq!(Item::decode(TAG_BOOL, &[2]), None);
        assert_eq!(Item::decode(TAG_INT, &[1, 2]), None);
        assert_eq!(Item::decode(TAG_STR, &[0xff]), None);
        assert_eq!(Item::decode(99, &[]), None);
    }
}
