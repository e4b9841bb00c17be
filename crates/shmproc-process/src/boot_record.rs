//! The boot record: everything a re-executed child (`spawn`, `forkserver`)
//! needs to run its target, encoded by the parent into the child's report.
//!
//! Layer 0 (foundations): uses `target` (for [`ExeId`]), `transfer` (the
//! codec) and `error`.

use shmproc_shm::os::Pid;

use crate::error::ProcessError;
use crate::target::ExeId;
use crate::transfer::{Packer, Transfer, Unpacker};

/// The most descriptors one child's arguments may carry.
pub const MAX_HANDLE_FDS: usize = 60;

const BOOT_MAGIC: u64 = u64::from_le_bytes(*b"SHMPBOOT");

/// Everything a re-executed child needs, written by the parent into the
/// child's report segment.
#[derive(Debug)]
pub(crate) struct Boot {
    pub(crate) exe: ExeId,
    pub(crate) trampoline_off: u64,
    pub(crate) target_off: u64,
    pub(crate) type_hash: u64,
    pub(crate) parent_pid: Pid,
    pub(crate) pdeathsig: i32,
    pub(crate) daemon: bool,
    pub(crate) name: String,
    pub(crate) args: Vec<u8>,
    /// Descriptor numbers of the arguments' handles, as the parent holds them
    /// (`spawn` keeps the same numbers in the child).
    pub(crate) fds: Vec<i32>,
}

impl Boot {
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut p = Packer::new();
        p.put_u64(BOOT_MAGIC);
        p.put_u64(self.exe.dev);
        p.put_u64(self.exe.ino);
        p.put_u64(self.trampoline_off);
        p.put_u64(self.target_off);
        p.put_u64(self.type_hash);
        p.put_u64(u64::from(self.parent_pid.as_u32()));
        p.put_u64(self.pdeathsig as u32 as u64);
        p.put_u64(u64::from(self.daemon));
        p.put_blob(self.name.as_bytes());
        p.put_blob(&self.args);
        p.put_u64(self.fds.len() as u64);
        for fd in &self.fds {
            p.put_u64(*fd as u32 as u64);
        }
        p.into_parts().0
    }

    pub(crate) fn decode(b: &[u8]) -> Result<Boot, ProcessError> {
        let mut u = Unpacker::new(b, Vec::new());
        if u.take_u64()? != BOOT_MAGIC {
            return Err(ProcessError::BadBoot("magic".into()));
        }
        let exe = ExeId {
            dev: u.take_u64()?,
            ino: u.take_u64()?,
        };
        let trampoline_off = u.take_u64()?;
        let target_off = u.take_u64()?;
        let type_hash = u.take_u64()?;
        let raw_parent = u.take_u64()?;
        let parent_pid = u32::try_from(raw_parent)
            .ok()
            .and_then(Pid::from_u32)
            .ok_or_else(|| ProcessError::BadBoot(format!("parent pid {raw_parent}")))?;
        let pdeathsig = u.take_u64()? as u32 as i32;
        let daemon = u.take_u64()? != 0;
        let name = String::unpack(&mut u)?;
        let args = u.take_blob()?.to_vec();
        let n = u.take_u64()?;
        if n > MAX_HANDLE_FDS as u64 {
            return Err(ProcessError::BadBoot(format!("{n} descriptors")));
        }
        let mut fds = Vec::new();
        for _ in 0..n {
            fds.push(u.take_u64()? as u32 as i32);
        }
        u.finish()?;
        Ok(Boot {
            exe,
            trampoline_off,
            target_off,
            type_hash,
            parent_pid,
            pdeathsig,
            daemon,
            name,
            args,
            fds,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boot_record_roundtrip_and_corruption() {
        let b = Boot {
            exe: ExeId { dev: 1, ino: 2 },
            trampoline_off: 3,
            target_off: u64::MAX,
            type_hash: 5,
            parent_pid: Pid::from_raw(77).expect("positive"),
            pdeathsig: 9,
            daemon: true,
            name: "Process-1".into(),
            args: vec![1, 2, 3],
            fds: vec![5, 6],
        };
        let enc = b.encode();
        let d = Boot::decode(&enc).expect("decode");
        assert_eq!(
            (d.parent_pid.as_raw(), d.pdeathsig, d.daemon),
            (77, 9, true)
        );
        assert_eq!(
            (d.name.as_str(), d.args.as_slice(), d.fds.as_slice()),
            ("Process-1", &[1u8, 2, 3][..], &[5, 6][..])
        );
        for cut in 0..enc.len() {
            assert!(Boot::decode(&enc[..cut]).is_err(), "truncated at {cut}");
        }
        let mut bad = enc.clone();
        bad[0] ^= 1;
        assert!(Boot::decode(&bad).is_err());
    }
}
