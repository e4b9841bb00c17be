//! What a child runs ([`Target`]), and finding a target `fn` again in a
//! re-executed child.
//!
//! Layer 0 (foundations): uses `transfer` and `error`.
//!
//! # How `spawn` finds the target
//! The child is the same executable (`/proc/self/exe` of the parent, which
//! names the parent's own inode even if the path was replaced since), so the
//! same code sits at the same distance from any reference point; only the
//! load address differs (ASLR). The parent records two offsets from
//! [`anchor`], a function of this crate:
//! - the target `fn(A)` itself, and
//! - a *trampoline*, `trampoline::<A>`, monomorphised for the argument type,
//!   which decodes `A` and calls the target.
//!
//! The child checks before it turns an offset back into a function pointer:
//! - that it runs the **same file** as the parent (device and inode of
//!   `/proc/self/exe`, recorded by the parent in the boot record);
//! - that both addresses fall inside the executable's own mappings (a `fn`
//!   from a `dylib` is refused in the parent already, with
//!   [`ProcessError::TargetOutsideExecutable`]);
//! - and, in the trampoline, that the argument type's hash matches the one
//!   the parent recorded (the trampoline and the target were paired in the
//!   parent, where the compiler checked `f: fn(A)`).
//!
//! A mismatch is [`ProcessError::BadBoot`] (the child exits with code 1 and
//! the message), never a call through a wrong pointer.
#![allow(unsafe_code)] // Offsets turned back into fn pointers, adopting fds.

use std::fmt;
use std::os::fd::OwnedFd;
use std::sync::OnceLock;

use shmproc_shm::os;

use crate::error::ProcessError;
use crate::transfer::{Transfer, Unpacker};

/// What a child runs: a plain `fn` with its encoded arguments (every start
/// method), or a closure (`fork` only).
pub(crate) enum Target {
    Fn {
        f: FnTarget,
        packed: Result<(Vec<u8>, Vec<OwnedFd>), ProcessError>,
    },
    Closure(Box<dyn FnOnce() + Send + 'static>),
}

impl fmt::Debug for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Fn { f: t, .. } => write!(f, "fn at {:#x}", t.target),
            Target::Closure(_) => f.write_str("closure"),
        }
    }
}

impl Target {
    pub(crate) fn run(self) -> Result<(), ProcessError> {
        match self {
            Target::Fn { f, packed } => {
                let (bytes, fds) = packed?;
                f.call(&bytes, fds)
            }
            Target::Closure(c) => {
                c();
                Ok(())
            }
        }
    }
}

/// What the child calls: decodes the arguments and runs the target.
pub(crate) type Trampoline =
    fn(target: usize, type_hash: u64, args: &[u8], fds: Vec<OwnedFd>) -> Result<(), ProcessError>;

/// The reference point for code offsets.
#[inline(never)]
fn anchor() {
    std::hint::black_box(());
}

fn anchor_addr() -> usize {
    anchor as fn() as usize
}

/// FNV-1a of the type's name and size: the same binary gives the same value.
pub(crate) fn type_hash<A>() -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let name = std::any::type_name::<A>().as_bytes();
    for b in name.iter().chain(&(size_of::<A>() as u64).to_le_bytes()) {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// Decodes `A` and calls `target`, which the parent created as a `fn(A)`.
pub(crate) fn trampoline<A: Transfer>(
    target: usize,
    hash: u64,
    args: &[u8],
    fds: Vec<OwnedFd>,
) -> Result<(), ProcessError> {
    if hash != type_hash::<A>() {
        return Err(ProcessError::BadBoot(format!(
            "argument type mismatch: the trampoline is for {}",
            std::any::type_name::<A>()
        )));
    }
    let mut u = Unpacker::new(args, fds);
    let a = A::unpack(&mut u)?;
    u.finish()?;
    // SAFETY: `target` is the address of a `fn(A)`: in a forked child it is the
    // parent's own pointer (same image); in a re-executed child it was rebuilt
    // from its offset only after `resolve` checked that this is the parent's
    // executable file and that the address lies inside it, and the type hash
    // above matches the `A` the parent paired this trampoline with.
    let f = unsafe { std::mem::transmute::<usize, fn(A)>(target) };
    f(a);
    Ok(())
}

/// A `fn` target prepared in the parent.
#[derive(Clone, Copy, Debug)]
pub(crate) struct FnTarget {
    pub(crate) trampoline: Trampoline,
    pub(crate) target: usize,
    pub(crate) type_hash: u64,
}

impl FnTarget {
    pub(crate) fn new<A: Transfer>(f: fn(A)) -> Self {
        Self {
            trampoline: trampoline::<A>,
            target: f as usize,
            type_hash: type_hash::<A>(),
        }
    }

    /// Offsets from the anchor, after checking both addresses lie in the
    /// executable (needed by `spawn` and `forkserver`).
    pub(crate) fn offsets(&self) -> Result<(u64, u64), ProcessError> {
        let t = self.trampoline as usize;
        for addr in [t, self.target] {
            if !in_executable(addr) {
                return Err(ProcessError::TargetOutsideExecutable { addr });
            }
        }
        let a = anchor_addr();
        Ok((t.wrapping_sub(a) as u64, self.target.wrapping_sub(a) as u64))
    }

    /// Rebuilds a target in a re-executed child from its offsets.
    pub(crate) fn resolve(
        exe: ExeId,
        trampoline_off: u64,
        target_off: u64,
        type_hash: u64,
    ) -> Result<FnTarget, ProcessError> {
        let mine =
            exe_id().ok_or_else(|| ProcessError::BadBoot("cannot stat /proc/self/exe".into()))?;
        if mine != exe {
            return Err(ProcessError::BadBoot(format!(
                "the boot record comes from another executable ({exe:?}, this is {mine:?})"
            )));
        }
        let a = anchor_addr();
        let t = a.wrapping_add(trampoline_off as usize);
        let target = a.wrapping_add(target_off as usize);
        for addr in [t, target] {
            if !in_executable(addr) {
                return Err(ProcessError::BadBoot(format!(
                    "offset leads outside the executable ({addr:#x})"
                )));
            }
        }
        // SAFETY: `t` is `trampoline::<A> as usize` of the parent moved by the
        // same load-address difference as the anchor, in the same executable
        // file (checked above): it is that very function here.
        let trampoline = unsafe { std::mem::transmute::<usize, Trampoline>(t) };
        Ok(FnTarget {
            trampoline,
            target,
            type_hash,
        })
    }

    pub(crate) fn call(self, args: &[u8], fds: Vec<OwnedFd>) -> Result<(), ProcessError> {
        (self.trampoline)(self.target, self.type_hash, args, fds)
    }
}

/// Device and inode of the running executable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ExeId {
    pub(crate) dev: u64,
    pub(crate) ino: u64,
}

pub(crate) fn exe_id() -> Option<ExeId> {
    static ID: OnceLock<Option<ExeId>> = OnceLock::new();
    *ID.get_or_init(|| {
        use std::os::unix::fs::MetadataExt;
        let m = std::fs::metadata("/proc/self/exe").ok()?;
        Some(ExeId {
            dev: m.dev(),
            ino: m.ino(),
        })
    })
}

/// Computes the executable's identity and address range now (the fork
/// server, so that the children it forks inherit them instead of reading
/// `/proc/self/maps` each).
pub(crate) fn warm_caches() {
    let _ = exe_id();
    let _ = exe_range();
    let _ = os::identity::pid();
    let _ = std::io::stdout();
}

/// The address range of the executable's mappings, if known.
pub(crate) fn exe_bounds() -> Option<(usize, usize)> {
    exe_range()
}

/// The address range of the executable's mappings, from `/proc/self/maps`.
fn exe_range() -> Option<(usize, usize)> {
    static RANGE: OnceLock<Option<(usize, usize)>> = OnceLock::new();
    *RANGE.get_or_init(|| {
        let exe = std::fs::read_link("/proc/self/exe").ok()?;
        let exe = exe.to_str()?.trim_end_matches(" (deleted)").to_owned();
        let maps = std::fs::read_to_string("/proc/self/maps").ok()?;
        let mut range: Option<(usize, usize)> = None;
        for line in maps.lines() {
            // start-end perms offset dev inode path
            let mut parts = line.splitn(6, ' ');
            let Some(addrs) = parts.next() else { continue };
            let path = parts.nth(4).map(str::trim).unwrap_or("");
            if path.trim_end_matches(" (deleted)") != exe {
                continue;
            }
            let Some((s, e)) = addrs.split_once('-') else {
                continue;
            };
            let (Ok(s), Ok(e)) = (usize::from_str_radix(s, 16), usize::from_str_radix(e, 16))
            else {
                continue;
            };
            range = Some(match range {
                None => (s, e),
                Some((a, b)) => (a.min(s), b.max(e)),
            });
        }
        range
    })
}

pub(crate) fn in_executable(addr: usize) -> bool {
    match exe_range() {
        Some((s, e)) => (s..e).contains(&addr),
        // /proc not readable: the same-inode check still holds.
        None => true,
    }
}

/// The offset of `addr` (checked to lie in the executable) from the anchor.
pub(crate) fn offset_of(addr: usize) -> Result<u64, ProcessError> {
    if !in_executable(addr) {
        return Err(ProcessError::TargetOutsideExecutable { addr });
    }
    Ok(addr.wrapping_sub(anchor_addr()) as u64)
}

/// The address `off` bytes from the anchor (unchecked: see `in_executable`).
pub(crate) fn resolve_offset(off: u64) -> usize {
    anchor_addr().wrapping_add(off as usize)
}

/// Takes ownership of an inherited descriptor number.
pub(crate) fn adopt(raw: i32) -> Result<OwnedFd, ProcessError> {
    // SAFETY: the number comes from our own boot protocol: the parent kept this
    // descriptor open for this child, and nothing else in this fresh image owns it.
    unsafe { os::adopt_fd(raw) }.map_err(ProcessError::os("adopt inherited fd"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(_: (u32, String)) {}

    #[test]
    fn offsets_resolve_to_the_same_functions() {
        let t = FnTarget::new(sample);
        let (to, fo) = t.offsets().expect("in the executable");
        let back = FnTarget::resolve(exe_id().expect("exe"), to, fo, t.type_hash).expect("resolve");
        assert_eq!(back.target, t.target);
        assert_eq!(back.trampoline as usize, t.trampoline as usize);
    }

    #[test]
    fn other_executable_is_refused() {
        let t = FnTarget::new(sample);
        let (to, fo) = t.offsets().expect("offsets");
        let mut id = exe_id().expect("exe");
        id.ino ^= 1;
        assert!(matches!(
            FnTarget::resolve(id, to, fo, t.type_hash),
            Err(ProcessError::BadBoot(_))
        ));
        assert!(FnTarget::resolve(exe_id().expect("exe"), u64::MAX / 2, fo, 0).is_err());
    }

    #[test]
    fn type_mismatch_is_refused() {
        let t = FnTarget::new(sample);
        let wrong = FnTarget {
            type_hash: type_hash::<u64>(),
            ..t
        };
        assert!(matches!(
            wrong.call(&[], Vec::new()),
            Err(ProcessError::BadBoot(_))
        ));
    }
}
