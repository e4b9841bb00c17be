//! Finding a task `fn` on another machine: every rank checks at start that
//! it runs a byte-identical executable ([`Identity`]), after which a `fn`'s
//! offset from the executable's reference point ([`WireRef`]) names the same
//! function on every rank, whatever its path, inode or load address.
#![allow(unsafe_code)] // Offsets turned back into fn pointers.

use shmproc_pool::PoolError;
use shmproc_process::__private::{code_address, code_offset, type_hash};
use shmproc_process::{PlainFn, StarFn};

/// What a rank says about itself at start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Identity {
    /// A hash of the whole executable file (`/proc/self/exe`).
    pub(crate) exe_digest: u64,
    /// Its length in bytes.
    pub(crate) exe_len: u64,
    /// A hash of the kernel's boot id: equal on one node, different across
    /// nodes.
    pub(crate) node: u64,
    /// The rank's pid.
    pub(crate) pid: u64,
}

impl Identity {
    pub(crate) const WORDS: usize = 4;

    /// This process's identity.
    pub(crate) fn current() -> Result<Self, PoolError> {
        let exe = std::fs::read("/proc/self/exe").map_err(|source| PoolError::Os {
            op: "reading /proc/self/exe (the build check)",
            source,
        })?;
        let boot =
            std::fs::read("/proc/sys/kernel/random/boot_id").map_err(|source| PoolError::Os {
                op: "reading /proc/sys/kernel/random/boot_id",
                source,
            })?;
        Ok(Self {
            exe_digest: digest(&exe),
            exe_len: exe.len() as u64,
            node: digest(&boot),
            pid: u64::from(std::process::id()),
        })
    }

    pub(crate) fn to_words(self) -> [u64; Self::WORDS] {
        [self.exe_digest, self.exe_len, self.node, self.pid]
    }

    pub(crate) fn from_words(w: &[u64]) -> Self {
        let g = |i: usize| w.get(i).copied().unwrap_or(0);
        Self {
            exe_digest: g(0),
            exe_len: g(1),
            node: g(2),
            pid: g(3),
        }
    }

    /// Whether `other` runs the same build.
    pub(crate) fn same_build(&self, other: &Self) -> bool {
        self.exe_digest == other.exe_digest && self.exe_len == other.exe_len
    }
}

/// A 64-bit hash of `bytes`: four multiply-rotate lanes over 8-byte words,
/// then the tail and the length. Not cryptographic: it tells builds apart,
/// it does not defend against a forged executable (a user who can start
/// ranks can run any code anyway).
pub(crate) fn digest(bytes: &[u8]) -> u64 {
    const K: [u64; 4] = [
        0x9e37_79b9_7f4a_7c15,
        0xc2b2_ae3d_27d4_eb4f,
        0x1656_67b1_9e37_79f9,
        0x27d4_eb2f_1656_67c5,
    ];
    let mut lanes = K;
    let mut blocks = bytes.chunks_exact(32);
    for b in &mut blocks {
        for (i, lane) in lanes.iter_mut().enumerate() {
            let w = u64::from_le_bytes(b[i * 8..i * 8 + 8].try_into().unwrap_or([0; 8]));
            *lane = (*lane ^ w).wrapping_mul(K[i]).rotate_left(29);
        }
    }
    let mut h = (bytes.len() as u64).wrapping_mul(K[0]);
    for lane in lanes {
        h = (h ^ lane).wrapping_mul(K[1]).rotate_left(31);
    }
    for &b in blocks.remainder() {
        h = (h ^ u64::from(b)).wrapping_mul(K[2]);
    }
    h ^ (h >> 29)
}

/// A plain `fn` as its offset from the executable's reference point and
/// the hash of its type. Meaningful on another rank only because every rank
/// checked at start that it runs the same executable bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct WireRef {
    pub(crate) offset: u64,
    pub(crate) type_hash: u64,
}

impl WireRef {
    pub(crate) const WORDS: usize = 2;

    /// Records `f` (refused for a `fn` outside the executable).
    pub(crate) fn of<F: PlainFn>(f: F) -> Result<Self, PoolError> {
        Ok(Self {
            offset: code_offset(f.addr())?,
            type_hash: type_hash::<F>(),
        })
    }

    /// Records `f`, a `fn` called with a tuple of its arguments.
    pub(crate) fn of_star<Args, F: StarFn<Args>>(f: F) -> Result<Self, PoolError> {
        Ok(Self {
            offset: code_offset(f.star_addr())?,
            type_hash: type_hash::<F>(),
        })
    }

    fn checked_addr<F>(self) -> Result<usize, String> {
        if self.type_hash != type_hash::<F>() {
            return Err(format!(
                "fn type mismatch: expected {}",
                std::any::type_name::<F>()
            ));
        }
        code_address(self.offset).ok_or_else(|| {
            format!(
                "code offset {:#x} leads outside the executable",
                self.offset
            )
        })
    }

    /// The `fn` back, on this rank.
    pub(crate) fn resolve<F: PlainFn>(self) -> Result<F, String> {
        let addr = self.checked_addr::<F>()?;
        // SAFETY: every rank checked at start (`Pool::build`) that it runs a
        // byte-identical executable, so the same offset from the reference
        // point names the same function here as on the rank that recorded
        // it; the address lies inside this executable (checked), and the
        // type hash equals `F`'s (the sender's compiler checked `f: F`).
        Ok(unsafe { F::from_addr(addr) })
    }

    /// The [`StarFn`] back; as [`resolve`](Self::resolve).
    pub(crate) fn resolve_star<Args, F: StarFn<Args>>(self) -> Result<F, String> {
        let addr = self.checked_addr::<F>()?;
        // SAFETY: as in `resolve`: the same executable bytes on every rank,
        // an address inside it, and `F`'s type hash.
        Ok(unsafe { F::star_from_addr(addr) })
    }

    pub(crate) fn words(self) -> [u64; Self::WORDS] {
        [self.offset, self.type_hash]
    }

    pub(crate) fn from_words(a: u64, b: u64) -> Self {
        Self {
            offset: a,
            type_hash: b,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn triple(x: u32) -> u64 {
        u64::from(x) * 3
    }

    #[test]
    fn wire_refs_round_trip_and_check_types() {
        let r = WireRef::of(triple as fn(u32) -> u64).expect("of");
        let back = WireRef::from_words(r.words()[0], r.words()[1]);
        let f: fn(u32) -> u64 = back.resolve().expect("resolve");
        assert_eq!(f(5), 15);
        assert!(back.resolve::<fn(u64) -> u64>().is_err());
        assert!(
            WireRef::from_words(u64::MAX / 2, r.type_hash)
                .resolve::<fn(u32) -> u64>()
                .is_err()
        );
    }

    #[test]
    fn digests_tell_bytes_apart() {
        let a = vec![7u8; 1000];
        let mut b = a.clone();
        b[999] = 8;
        assert_ne!(digest(&a), digest(&b));
        assert_ne!(digest(&a), digest(&a[..999]));
        assert_eq!(digest(&a), digest(&a.clone()));
    }
}
